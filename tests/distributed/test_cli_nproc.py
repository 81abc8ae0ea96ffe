"""``turborec train --nproc``: what the CLI refuses to shard, in one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("task", ["ctr", "pipeline"])
def test_nproc_with_a_task_it_does_not_shard_is_one_line_and_exit_2(task: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "turborec.cli.main", "train", "--task", task, "--nproc", "2",
                           "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--nproc trains retrieval models" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
