"""CTR rows before and after encoding, and the random split that CTR evaluation uses.

``RawCTR`` is what a loader reads: dense counts as float64 with NaN for missing
and categorical values as strings. ``CTRData`` is what a ranker trains on:
transformed dense float32, per-feature vocabulary indices (row 0 = out of
vocabulary) and float32 labels. A :class:`~turborec.data.ctr.encoder.CTREncoder`
turns one into the other with the same mapping at training and inference time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from turborec.errors import ConfigError, DataError


@dataclass(frozen=True, eq=False)
class RawCTR:
    """Rows as read from a file: ``dense`` float64 [N, n_dense] (NaN = missing),
    ``categorical`` object [N, n_sparse] of str ("" = missing), ``label`` float32 [N] or None."""

    dense: np.ndarray
    categorical: np.ndarray
    label: np.ndarray | None
    dense_names: tuple[str, ...]
    sparse_names: tuple[str, ...]
    source: str = "<memory>"

    def __post_init__(self) -> None:
        n = self.categorical.shape[0] if self.categorical.ndim == 2 else -1
        if self.dense.ndim != 2 or self.categorical.ndim != 2 or self.dense.shape[0] != n:
            raise DataError(
                f"dense {self.dense.shape} and categorical {self.categorical.shape} must be 2-d with equal rows",
                source=self.source,
            )
        if self.dense.shape[1] != len(self.dense_names) or self.categorical.shape[1] != len(self.sparse_names):
            raise DataError("column names do not match the array widths", source=self.source)
        if self.label is not None and self.label.shape != (n,):
            raise DataError(f"label shape {self.label.shape} != ({n},)", source=self.source)

    def __len__(self) -> int:
        return int(self.categorical.shape[0])

    def take(self, rows: np.ndarray) -> RawCTR:
        label = self.label[rows] if self.label is not None else None
        return RawCTR(self.dense[rows], self.categorical[rows], label, self.dense_names, self.sparse_names, self.source)

    @classmethod
    def concat(cls, parts: Sequence[RawCTR]) -> RawCTR:
        """Stack row blocks with identical columns (e.g. the two files of the Avazu sample)."""
        if not parts:
            raise DataError("nothing to concatenate")
        first = parts[0]
        for p in parts[1:]:
            if p.dense_names != first.dense_names or p.sparse_names != first.sparse_names:
                raise DataError(f"columns of {p.source} differ from those of {first.source}", source=p.source)
            if (p.label is None) != (first.label is None):
                raise DataError(f"{p.source} and {first.source}: labelled and unlabelled rows mixed", source=p.source)
        label = None if first.label is None else np.concatenate([p.label for p in parts if p.label is not None])
        return cls(
            np.concatenate([p.dense for p in parts]),
            np.concatenate([p.categorical for p in parts]),
            label,
            first.dense_names,
            first.sparse_names,
            "+".join(p.source for p in parts),
        )


@dataclass(frozen=True, eq=False)
class CTRData:
    """Encoded CTR rows: the input of every ranker.

    ``dense`` float32 [N, n_dense] (already transformed), ``sparse`` int64 [N, n_sparse]
    with ``0 <= sparse[:, j] < cardinalities[j]`` (index 0 = out of vocabulary),
    ``label`` float32 [N] of 0/1, or None for unlabelled rows.
    """

    dense: np.ndarray
    sparse: np.ndarray
    label: np.ndarray | None
    cardinalities: tuple[int, ...]
    dense_names: tuple[str, ...] = field(default=())
    sparse_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.dense.dtype != np.float32 or self.dense.ndim != 2:
            raise DataError(f"dense must be float32 [N, n_dense], got {self.dense.dtype} {self.dense.shape}")
        if self.sparse.dtype != np.int64 or self.sparse.ndim != 2:
            raise DataError(f"sparse must be int64 [N, n_sparse], got {self.sparse.dtype} {self.sparse.shape}")
        n = self.sparse.shape[0]
        if self.dense.shape[0] != n:
            raise DataError(f"dense has {self.dense.shape[0]} rows, sparse {n}")
        if self.label is not None and (self.label.dtype != np.float32 or self.label.shape != (n,)):
            raise DataError(f"label must be float32 [{n}], got {self.label.dtype} {self.label.shape}")
        if len(self.cardinalities) != self.sparse.shape[1]:
            raise DataError(f"{len(self.cardinalities)} cardinalities for {self.sparse.shape[1]} sparse features")
        if not self.dense_names:
            object.__setattr__(self, "dense_names", tuple(f"dense_{i}" for i in range(self.dense.shape[1])))
        if not self.sparse_names:
            object.__setattr__(self, "sparse_names", tuple(f"sparse_{i}" for i in range(self.sparse.shape[1])))
        if n:
            low, high = self.sparse.min(axis=0), self.sparse.max(axis=0)
            for j, card in enumerate(self.cardinalities):
                if low[j] < 0 or high[j] >= card:
                    raise DataError(
                        f"sparse feature '{self.sparse_names[j]}' has index range [{low[j]}, {high[j]}] "
                        f"outside its vocabulary of {card}"
                    )

    def __len__(self) -> int:
        return int(self.sparse.shape[0])

    @property
    def n_dense(self) -> int:
        return int(self.dense.shape[1])

    @property
    def n_sparse(self) -> int:
        return int(self.sparse.shape[1])

    @property
    def positive_rate(self) -> float:
        if self.label is None or not len(self):
            return float("nan")
        return float(self.label.mean())

    def take(self, rows: np.ndarray) -> CTRData:
        label = self.label[rows] if self.label is not None else None
        return CTRData(
            self.dense[rows], self.sparse[rows], label, self.cardinalities, self.dense_names, self.sparse_names
        )


RowsT = TypeVar("RowsT", RawCTR, CTRData)


def shuffle_split(data: RowsT, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> tuple[RowsT, ...]:
    """Shuffle rows with ``seed`` and cut them into consecutive parts of the given ratios.

    Works on raw rows (split first, then fit the encoder on the training part only)
    and on encoded rows. Ratios must be positive and sum to 1; the last part takes
    the rounding remainder.
    """
    fractions = np.asarray(ratios, dtype=np.float64)
    if fractions.ndim != 1 or len(fractions) < 2 or (fractions <= 0).any() or abs(fractions.sum() - 1.0) > 1e-6:
        raise ConfigError(f"split ratios must be >= 2 positive numbers summing to 1, got {tuple(ratios)}")
    n = len(data)
    perm = np.random.default_rng(seed).permutation(n)
    cuts = np.floor(np.cumsum(fractions)[:-1] * n).astype(np.int64)
    return tuple(data.take(np.sort(part)) for part in np.split(perm, cuts))


def row_fingerprints(raw: RawCTR) -> np.ndarray:
    """A 64-bit hash of each row's feature values (label left out), uint64 [N]: equal rows hash equal in
    any process, so an evaluation can count the rows it shares with a model's training rows."""
    import pandas as pd

    columns = {f"d{i}": raw.dense[:, i] for i in range(raw.dense.shape[1])}
    columns.update({f"c{j}": raw.categorical[:, j].astype(str) for j in range(raw.categorical.shape[1])})
    frame = pd.DataFrame(columns)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
