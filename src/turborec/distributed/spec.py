"""What a sharded training job is told: one frozen record, passed to every rank as JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from turborec.distributed.sharding import SHARDINGS, TABLE_OPTIMIZERS
from turborec.errors import ConfigError


@dataclass(frozen=True)
class ShardedTrainSpec:
    """``turborec train --nproc N`` options that the workers need (the CLI builds it, torchrun carries it)."""

    out: str
    data: str | None = None
    format: str | None = None  # None: movielens with data, else synthetic
    data_options: Mapping[str, Any] = field(default_factory=dict)  # load_dataset keyword options
    protocol: str = "recbole"
    split: str = "protocol"  # or "none": train on everything
    model: str = "two-tower"
    params: Mapping[str, str] = field(default_factory=dict)  # --param KEY=VALUE, coerced by the estimator
    epochs: int | None = None
    seed: int = 2020
    sharding: str = "table_wise"
    # adam: the estimator's optimizer and learning rate on the shards (dense kernel; the default, as one
    # process trains); adagrad / rowwise_adagrad / sgd: FBGEMM's fused kernel with ``embedding_lr``
    embedding_optimizer: str = "adam"
    embedding_lr: float | None = None  # fused kinds; None: 0.15 (see docs/distributed.md)
    checkpoint_dir: str | None = None
    checkpoint_every: int = 1
    device: str = "cpu"
    backend: str = "auto"
    k: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        if self.model != "two-tower":
            raise ConfigError(f"--nproc trains the two-tower model with sharded tables; got --model {self.model}")
        if self.split not in ("protocol", "none"):
            raise ConfigError(f"split {self.split!r}: expected protocol or none")
        if self.sharding not in SHARDINGS:
            raise ConfigError(f"--sharding {self.sharding}: expected one of {', '.join(SHARDINGS)}")
        if self.embedding_optimizer not in TABLE_OPTIMIZERS:
            raise ConfigError(f"embedding optimizer {self.embedding_optimizer!r}: expected one of "
                              f"{', '.join(TABLE_OPTIMIZERS)}")
        if self.embedding_lr is not None and not self.embedding_lr > 0:
            raise ConfigError(f"embedding_lr must be > 0, got {self.embedding_lr}")
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=dict)

    @classmethod
    def from_json(cls, text: str) -> ShardedTrainSpec:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"sharded training spec is not JSON: {exc}") from exc
        known = {f.name for f in fields(cls)}
        unknown = set(obj) - known
        if unknown:
            raise ConfigError(f"sharded training spec: unknown keys {sorted(unknown)}")
        return cls(**obj)
