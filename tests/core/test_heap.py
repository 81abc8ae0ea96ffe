"""_util.heap: a loop that frees and re-allocates a block's worth of buffers stops faulting its pages in
again once keep_freed_memory() ran (counted in minor page faults, not time, so the verdict is the
machine's allocator, not its speed). Each case runs in its own process: the setting is process-wide."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHURN = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from turborec._util.heap import keep_freed_memory
    assert keep_freed_memory()
def blocks():
    for _ in range(20):
        live = [np.ones(1 << 21, dtype=np.float32) for _ in range(10)]  # 10 x 8 MB alive at once, then freed
        del live
blocks()  # the first round faults every page in: count the rounds after it
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
blocks()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env = {k: v for k, v in env.items() if not k.startswith("MALLOC_")}  # glibc's own defaults for "default"
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_buffers_are_reused_without_page_faults() -> None:
    pages = 10 * (8 << 20) // os.sysconf("SC_PAGE_SIZE")  # one round's buffers
    assert _faults("default") > 2 * pages  # glibc trims the freed heap: rounds fault their pages in again
    assert _faults("keep") < pages // 10  # kept: the next round reuses them
