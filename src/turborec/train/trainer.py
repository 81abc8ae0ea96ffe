"""A small, generic training loop: epochs of mini-batches, early stopping, best-state restore."""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from turborec._util.progress import bar as progress_bar
from turborec._util.progress import describe, log_line
from turborec._util.smoke import capped
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
    # the stopping rule (see stale_validations): the mean of the last ``stop_window`` validation scores must
    # rise by more than ``stop_tolerance`` (relative) within ``patience`` validations; 1 and 0: the raw score
    stop_window: int = 1
    stop_tolerance: float = 0.0
    # steps an epoch may take where the estimator batches by interactions (the two-tower's per-user
    # objective): a larger data set gets larger steps instead of more of them; 0 = no limit
    max_steps_per_epoch: int = 0
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
        if self.stop_window < 1 or not 0.0 <= self.stop_tolerance < 1.0 or self.max_steps_per_epoch < 0:
            raise ConfigError("stop_window must be >= 1, stop_tolerance in [0, 1), max_steps_per_epoch >= 0")

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
    # per epoch: seconds spent training (no validation), and wall / process-CPU seconds since the start
    # at the epoch's end (validation included): what time-to-quality is read from
    train_seconds: list[float] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)
    cpu_elapsed: list[float] = field(default_factory=list)


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


def adam(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """Adam with ``config``'s lr and weight decay; the fused kernel where torch has one for the parameters.

    On CPU the default (a Python loop over the parameters) cost a two-tower step ~3 ms of ~40 (issue 16);
    the fused kernel does the same update in one pass.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def stale_validations(scores: Sequence[float], window: int = 1, tolerance: float = 0.0) -> int:
    """How many validations ago the smoothed curve last made progress (higher is better); a fit stops
    once this reaches its patience.

    The smoothed curve is the mean of the last ``window`` scores (fewer at the start). Progress is a
    smoothed value above the last counted one by more than ``tolerance`` of it (relative), so a curve that
    only creeps up stops, yet small gains that add up to more than the tolerance still count. With
    ``window=1, tolerance=0`` this is the plain rule: validations since the best score. A mean keeps one
    lucky validation from setting a bar the next ``patience`` ones must beat (a spike); it does not help
    on a flat, noisy plateau: replayed on ml-latest-small's two-tower curves, windows of 3-10 and
    tolerances of 0.1-0.2% kept the plain rule's epochs or stopped earlier at a worse validation score,
    so the defaults keep the plain rule (docs/benchmarks.md, benchmarks/stopping.py).
    """
    counted, last = -math.inf, -1
    for i in range(len(scores)):
        recent = scores[max(0, i + 1 - window) : i + 1]
        smoothed = sum(recent) / len(recent)
        bar = counted + tolerance * abs(counted) if math.isfinite(counted) else counted
        if smoothed > bar:
            counted, last = smoothed, i
    return len(scores) - 1 - last


@dataclass
class LoopState:
    """Where a :func:`fit_loop` run stands after an epoch: what a checkpoint keeps besides the weights.

    ``extras`` holds the caller's stateful helpers (data RNGs, the weight average...) by name, so a
    :class:`Parallel` that checkpoints can save and restore them with the loop.
    """

    epoch: int = -1  # the last finished epoch
    history: TrainHistory = field(default_factory=TrainHistory)
    stale: int = 0
    best_state: Any = None
    seconds: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)


class Parallel:
    """How a training run is spread over processes. This base is one process and every hook is the identity;
    ``turborec.distributed`` subclasses it for sharded training (tables sharded over processes, gradients
    averaged, validation on rank 0, checkpoints), so both run the same estimator code and :func:`fit_loop`.

    An estimator that supports it calls :meth:`prepare` for the net it trains, :meth:`rows` to pick its
    part of each global batch, :meth:`optimizer`, :meth:`evaluate` around its validation score and
    :meth:`finish` at the end; :func:`fit_loop` calls the loop hooks.
    """

    rank: int = 0
    world_size: int = 1

    # ------------------------------------------------------------ estimator hooks
    def prepare(self, net: nn.Module) -> nn.Module:
        """The module that trains (here ``net`` itself; sharded: a copy whose tables are sharded)."""
        return net

    def rows(self, n: int) -> tuple[int, int]:
        """This process's rows [lo, hi) of a global batch of ``n`` rows."""
        return 0, n

    def optimizer(self, net: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
        return adam(net.parameters(), config)

    def evaluate(self, score: Callable[[], float]) -> Callable[[], float]:
        """``score`` reads the estimator's net; sharded: fill it from the shards first, score once, share."""
        return score

    def finish(self) -> None:
        """After training: leave the trained weights in the estimator's net."""

    # ----------------------------------------------------------------- loop hooks
    def step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()

    def mean_loss(self, total: float, count: int) -> float:
        return total / max(count, 1)

    def agree(self, stop: bool) -> bool:
        """Whether to stop, the same on every process."""
        return stop

    def snapshot(self, net: nn.Module) -> Any:
        return copy.deepcopy(net.state_dict())

    def restore(self, net: nn.Module, snapshot: Any) -> None:
        net.load_state_dict(snapshot)

    def resume(self, net: nn.Module, optimizer: torch.optim.Optimizer, state: LoopState) -> None:
        """Before the first epoch: fill ``state`` (and the weights, optimizer, extras) from a checkpoint."""

    def epoch_end(self, net: nn.Module, optimizer: torch.optim.Optimizer, state: LoopState) -> None:
        """After each epoch (and its validation): a place to checkpoint."""


def fit_loop(
    net: nn.Module,
    loss_fn: Callable[[Any], torch.Tensor],
    batches: Callable[[int], Iterable[Any]],
    config: TrainConfig,
    evaluate: Callable[[], float] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    desc: str = "train",
    parallel: Parallel | None = None,
    extras: Mapping[str, Any] | None = None,
) -> TrainHistory:
    """Train ``net`` with ``loss_fn`` over ``batches(epoch)``; stop early on ``evaluate()`` (higher is better).

    The best state (by validation score) is restored at the end; the fit stops once
    :func:`stale_validations` of the scores reaches ``config.patience``. ``config.max_seconds`` is checked
    after every batch, so a time cap holds even when one epoch takes longer than the cap. Progress is
    a bar on a terminal and one line per epoch on stderr otherwise (``config.progress`` turns both off).
    ``parallel`` (default: one process) supplies the hooks a distributed run replaces; ``extras`` are the
    caller's stateful helpers that a checkpoint must keep (see :class:`LoopState`).
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    par = parallel or Parallel()
    opt = optimizer or adam(net.parameters(), config)
    state = LoopState(extras=dict(extras or {}))
    par.resume(net, opt, state)
    history = state.history
    start = time.perf_counter() - state.seconds
    cpu_start = time.process_time()

    max_seconds = capped(config.max_seconds)  # TURBOREC_SMOKE lowers it (docs smoke test)

    def over_time() -> bool:
        return max_seconds is not None and time.perf_counter() - start > max_seconds

    bar = progress_bar(config.progress, iterable=range(state.epoch + 1, config.epochs), desc=desc, leave=False)
    out_of_time = False
    for epoch in bar:
        net.train()
        total, count = 0.0, 0
        epoch_start = time.perf_counter()
        for batch in batches(epoch):
            # every process stops at the same batch (agree: rank 0's clock); a collective only with a cap
            if count and max_seconds is not None and par.agree(over_time()):
                out_of_time = True
                break
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(batch)
            loss.backward()
            par.step(opt)
            total += float(loss.detach())
            count += 1
        history.losses.append(par.mean_loss(total, count))
        history.train_seconds.append(time.perf_counter() - epoch_start)
        postfix = {"loss": f"{history.losses[-1]:.4f}"}
        if evaluate is not None and (epoch + 1) % config.eval_every == 0:
            net.eval()
            with torch.no_grad():
                score = float(evaluate())
            history.scores.append(score)
            postfix["valid"] = f"{score:.4f}"
            if score > history.best_score:  # the weights kept are the best validated, whatever the rule
                history.best_score, history.best_epoch = score, epoch
                state.best_state = par.snapshot(net)
            state.stale = stale_validations(history.scores, config.stop_window, config.stop_tolerance)
        history.elapsed.append(time.perf_counter() - start)
        history.cpu_elapsed.append(time.process_time() - cpu_start)
        bar.set_postfix(postfix)
        log_line(config.progress, f"{desc} epoch {epoch + 1}/{config.epochs} {describe(postfix)} "
                                  f"({time.perf_counter() - epoch_start:.1f}s)")
        state.epoch = epoch
        state.seconds = time.perf_counter() - start
        stop = par.agree(state.stale >= config.patience or out_of_time or over_time())
        par.epoch_end(net, opt, state)
        if stop:
            break
    if state.best_state is not None:
        par.restore(net, state.best_state)
    net.eval()
    history.seconds = time.perf_counter() - start
    return history
