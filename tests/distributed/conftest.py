"""Running torchrun jobs from tests: loopback only, one thread per rank, bounded in time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from turborec.distributed.env import loopback_environment
from turborec.distributed.launch import torchrun_command

JOBS = Path(__file__).with_name("jobs.py")
REPO = Path(__file__).resolve().parents[2]


def run_job(name: str, tmp_path: Path, nproc: int = 2, args: tuple[str, ...] = (), timeout: float = 240) -> list[dict[str, Any]]:
    """Run ``jobs.py name`` in ``nproc`` ranks; every rank's result, by rank."""
    out = tmp_path / f"{name}.json"
    cmd = torchrun_command(nproc, "", [name, str(out), *args], script=str(JOBS))
    env = loopback_environment()
    env["PYTHONPATH"] = str(REPO / "src")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if proc.returncode != 0:
        pytest.fail(f"job {name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return [json.loads(Path(f"{out}.{r}").read_text()) for r in range(nproc)]


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
