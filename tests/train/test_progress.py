"""Progress output: bars only on a terminal, one line per epoch in a log; time caps hold inside an epoch."""

from __future__ import annotations

import time

import pytest
import torch

from turborec.train.trainer import TrainConfig, fit_loop


def _net_and_loss() -> tuple[torch.nn.Module, object]:
    net = torch.nn.Linear(2, 1)

    def loss(batch: torch.Tensor) -> torch.Tensor:
        return (net(batch) ** 2).mean()

    return net, loss


def test_redirected_log_gets_one_line_per_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    net, loss = _net_and_loss()
    fit_loop(net, loss, lambda e: [torch.ones(4, 2)] * 3, TrainConfig(epochs=4, progress=True), desc="toy")
    err = capsys.readouterr().err  # captured: not a terminal
    lines = [line for line in err.splitlines() if line.strip()]
    assert "\r" not in err
    assert [line.split()[:3] for line in lines] == [["toy", "epoch", f"{e}/4"] for e in range(1, 5)]
    assert all("loss" in line for line in lines)


def test_progress_false_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    net, loss = _net_and_loss()
    fit_loop(net, loss, lambda e: [torch.ones(4, 2)], TrainConfig(epochs=2, progress=False))
    assert capsys.readouterr().err == ""


def test_max_seconds_stops_inside_a_long_epoch() -> None:
    net, loss = _net_and_loss()
    consumed = []

    def batches(epoch: int):  # type: ignore[no-untyped-def]
        for i in range(200):  # 200 x 20 ms = 4 s per epoch, far above the cap
            consumed.append(i)
            time.sleep(0.02)
            yield torch.ones(4, 2)

    history = fit_loop(net, loss, batches, TrainConfig(epochs=5, progress=False, max_seconds=0.3))
    assert len(history.losses) == 1  # stopped during the first epoch
    assert len(consumed) < 100
