"""A small, generic training loop: epochs of mini-batches, early stopping, best-state restore."""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from turborec._util.progress import bar as progress_bar
from turborec._util.progress import describe, log_line
from turborec.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by the gradient-trained estimators."""

    epochs: int = 30
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 3
    eval_every: int = 1
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    threads: int | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size <= 0:
            raise ConfigError("epochs and batch_size must be positive")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise ConfigError(f"learning rate must be a positive number, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class TrainHistory:
    losses: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = -math.inf
    seconds: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but CUDA is not available")
    return torch.device(name)


def fit_loop(
    net: nn.Module,
    loss_fn: Callable[[Any], torch.Tensor],
    batches: Callable[[int], Iterable[Any]],
    config: TrainConfig,
    evaluate: Callable[[], float] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    desc: str = "train",
) -> TrainHistory:
    """Train ``net`` with ``loss_fn`` over ``batches(epoch)``; stop early on ``evaluate()`` (higher is better).

    The best state (by validation score) is restored at the end. ``config.max_seconds`` is checked
    after every batch, so a time cap holds even when one epoch takes longer than the cap. Progress is
    a bar on a terminal and one line per epoch on stderr otherwise (``config.progress`` turns both off).
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    opt = optimizer or torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = TrainHistory()
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    start = time.perf_counter()
    bar = progress_bar(config.progress, iterable=range(config.epochs), desc=desc, leave=False)
    out_of_time = False
    for epoch in bar:
        net.train()
        total, count = 0.0, 0
        epoch_start = time.perf_counter()
        for batch in batches(epoch):
            if count and config.max_seconds is not None and time.perf_counter() - start > config.max_seconds:
                out_of_time = True
                break
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(batch)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            count += 1
        history.losses.append(total / max(count, 1))
        postfix = {"loss": f"{history.losses[-1]:.4f}"}
        if evaluate is not None and (epoch + 1) % config.eval_every == 0:
            net.eval()
            with torch.no_grad():
                score = float(evaluate())
            history.scores.append(score)
            postfix["valid"] = f"{score:.4f}"
            if score > history.best_score:
                history.best_score, history.best_epoch, stale = score, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                stale += 1
        bar.set_postfix(postfix)
        log_line(config.progress, f"{desc} epoch {epoch + 1}/{config.epochs} {describe(postfix)} "
                                  f"({time.perf_counter() - epoch_start:.1f}s)")
        if stale >= config.patience:
            break
        if out_of_time or (config.max_seconds is not None and time.perf_counter() - start > config.max_seconds):
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    history.seconds = time.perf_counter() - start
    return history
