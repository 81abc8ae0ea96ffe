"""``turborec train --nproc 2``: TorchRec sharded training end to end, checkpoints, and a killed worker."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from turborec.distributed.launch import launch_training, start_training
from turborec.distributed.spec import ShardedTrainSpec
from turborec.errors import ConfigError

pytestmark = pytest.mark.distributed
pytest.importorskip("torchrec")

DATA = {"n_users": 300, "n_items": 150, "n_interactions": 6000, "seed": 3}


def _spec(tmp: Path, name: str, **kw: object) -> ShardedTrainSpec:
    base: dict[str, object] = {"out": str(tmp / name), "format": "synthetic", "data_options": DATA, "epochs": 3,
                               "params": {"dim": "16", "hidden": "32", "patience": "10"}, "seed": 7}
    return ShardedTrainSpec(**{**base, **kw})  # type: ignore[arg-type]


def _weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path / "weights.safetensors"))


def test_spec_rejects_what_it_cannot_train(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="two-tower"):
        _spec(tmp_path, "x", model="ease")
    with pytest.raises(ConfigError, match="sharding"):
        _spec(tmp_path, "x", sharding="diagonal")
    spec = _spec(tmp_path, "x", sharding="row_wise")
    assert ShardedTrainSpec.from_json(spec.to_json()) == spec


def test_cli_flags_train_two_processes_into_a_servable_artifact(tmp_path: Path) -> None:
    """``turborec train ... --nproc 2 --sharding row_wise`` (the train command's flags plus ours)."""
    import argparse
    import json

    from turborec.cli import cmd_distributed, cmd_train
    from turborec.cli.common import add_quiet
    from turborec.train import load

    parser = argparse.ArgumentParser()
    cmd_train.add_arguments(parser)
    add_quiet(parser)  # main.py gives every command --quiet
    if not any(a.dest == "nproc" for a in parser._actions):
        cmd_distributed.add_train_arguments(parser)
    config = tmp_path / "synthetic.json"
    config.write_text(json.dumps(DATA))
    argv = ["--data", str(config), "--format", "synthetic", "--model", "two-tower", "--out", str(tmp_path / "tt"),
            "--epochs", "3", "--seed", "7", "--param", "dim=16", "--param", "hidden=32", "--quiet"]
    assert cmd_distributed.run_sharded(parser.parse_args(argv)) is None  # one process: the ordinary path
    assert cmd_distributed.run_sharded(parser.parse_args([*argv, "--nproc", "2", "--sharding", "row_wise"])) == 0
    rec = load(tmp_path / "tt")
    info = rec.metrics["distributed"]
    assert info["world_size"] == 2 and info["sharding"] == "row_wise"
    assert {s["rank"] for s in info["plan"]} == {0, 1}
    assert rec.metrics["test"]["ndcg@10"] > 0.0
    ids, scores = rec.recommend([rec.users.decode(np.array([0]))[0]], N=5)  # type: ignore[union-attr]
    assert ids.shape == (1, 5) and np.all(np.diff(scores[0]) <= 0)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def test_killed_worker_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    """Kill rank 1 after the first checkpoint: the launcher restarts the job, it resumes, and ends where an
    uninterrupted run ends (same weights), having redone only the epochs after the checkpoint."""
    epochs = 4
    assert launch_training(_spec(tmp_path, "straight", epochs=epochs, checkpoint_dir=str(tmp_path / "ck1")), 2) == 0

    spec = _spec(tmp_path, "killed", epochs=epochs, checkpoint_dir=str(tmp_path / "ck2"))
    log = tmp_path / "killed.log"
    job = start_training(spec, 2, max_restarts=1, log=log)
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "ck2" / "latest.json").exists():
            assert job.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.1)
        workers = [w for torchrun in _children(job.pid) for w in _children(torchrun)]
        assert len(workers) == 2, workers
        os.kill(workers[1], signal.SIGKILL)  # one rank dies; the launcher starts the job again
        assert job.wait(300) == 0, log.read_text()[-3000:]
    finally:
        if job.poll() is None:
            job.kill()
    text = log.read_text()
    assert "restarting all 2 processes" in text and "resumed from the checkpoint of epoch" in text, text[-2000:]
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    worst = max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a if a[k].size)
    assert worst < 1e-5, f"resumed run differs from the uninterrupted one by {worst}"


def test_one_process_through_torchrec_trains_the_estimators_model(tmp_path: Path) -> None:
    """The sharded job is the estimator's own training (same loop, loss, negatives, weight averaging, early
    stopping): through TorchRec with one process it ends with the weights ``turborec train`` without
    --nproc ends with (dropout, history dropout and weight averaging on, as by default)."""
    from turborec.data import apply_protocol, load_dataset
    from turborec.train.options import make_estimator

    spec = _spec(tmp_path, "sharded", epochs=3)
    assert launch_training(spec, 1) == 0
    split = apply_protocol("recbole", load_dataset(None, "synthetic", **DATA), seed=7)
    rec = make_estimator("two-tower", dict(spec.params), seed=7, epochs=3, progress=False, device="cpu")
    rec.fit(split.train, split.valid)
    rec.save(tmp_path / "single")
    a, b = _weights(tmp_path / "single"), _weights(tmp_path / "sharded")
    assert a.keys() == b.keys()
    worst = max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a if a[k].size)
    # not bit for bit: the estimator pools a dense table's history rows with one embedding_bag, a sharded
    # table's with gathers and a sum (another summation order), and 3 epochs of Adam grow that rounding to
    # ~6e-4 at most; another objective, loss or optimizer would differ by orders of magnitude more
    assert worst < 2e-3, f"the one-process TorchRec job differs from the estimator by {worst}"
