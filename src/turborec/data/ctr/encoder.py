"""Raw CTR rows -> model inputs, with the mapping kept as JSON for inference.

Dense columns: ``log(1 + max(x, 0))``, missing -> 0. This is the DLRM reference
preprocessing for Criteo: counts are heavy-tailed (up to ~1e6) and the few
negative values (I2 has -1..-3) carry no order worth keeping, so they are
clipped to 0. ``dense_transform="identity"`` keeps values (missing still -> 0).
``standardize=True`` then centres and scales each column with the mean and standard
deviation of the fitting rows (helps models that multiply dense inputs with embeddings).

Categorical columns: either a vocabulary of the values seen at least
``min_freq`` times in the data given to :meth:`CTREncoder.fit`, most frequent
first at index 1, or (for features named in ``hash_buckets``) a stable blake2b
hash into ``1..buckets``. Index 0 is the out-of-vocabulary row: rare values,
and values never seen in training, map there at inference, never to an error.
A missing value ("") is an ordinary value: in click logs missingness is informative.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from turborec.data.ctr.containers import CTRData, RawCTR
from turborec.data.vocab import Vocabulary
from turborec.errors import ConfigError, DataError, NotFittedError

ENCODER_FORMAT = 1
_DENSE_TRANSFORMS = ("log1p", "identity")


class CTREncoder:
    """Fits per-feature vocabularies (or hashing) on training rows; transforms any rows the same way."""

    def __init__(
        self,
        *,
        min_freq: int = 1,
        hash_buckets: int | Mapping[str, int] | None = None,
        dense_transform: str = "log1p",
        standardize: bool = False,
    ) -> None:
        if min_freq < 1:
            raise ConfigError(f"min_freq must be >= 1, got {min_freq}")
        if dense_transform not in _DENSE_TRANSFORMS:
            raise ConfigError(f"dense_transform must be one of {_DENSE_TRANSFORMS}, got {dense_transform!r}")
        self.min_freq = int(min_freq)
        self.hash_buckets = hash_buckets if not isinstance(hash_buckets, Mapping) else dict(hash_buckets)
        self.dense_transform = dense_transform
        self.standardize = bool(standardize)
        self.dense_mean: np.ndarray | None = None
        self.dense_std: np.ndarray | None = None
        self.dense_names: tuple[str, ...] = ()
        self.sparse_names: tuple[str, ...] = ()
        self.vocabs: dict[str, Vocabulary] = {}
        self.buckets: dict[str, int] = {}
        self._fitted = False
        self._indexes: dict[str, pd.Index] = {}
        self._arrow_vocabs: dict[tuple[str, Any], Any] = {}

    # -- fitting -----------------------------------------------------------------
    def _buckets_for(self, name: str) -> int | None:
        if self.hash_buckets is None:
            return None
        b = self.hash_buckets if isinstance(self.hash_buckets, int) else self.hash_buckets.get(name)
        if b is not None and b < 1:
            raise ConfigError(f"hash_buckets for '{name}' must be >= 1, got {b}")
        return b

    def fit(self, raw: RawCTR) -> CTREncoder:
        """Learn the vocabularies from ``raw`` (use the training split only)."""
        if not len(raw):
            raise DataError("cannot fit a CTR encoder on zero rows", source=raw.source)
        if isinstance(self.hash_buckets, dict):
            unknown = set(self.hash_buckets) - set(raw.sparse_names)
            if unknown:
                raise ConfigError(f"hash_buckets names unknown sparse features {sorted(unknown)}")
        self.dense_names, self.sparse_names = raw.dense_names, raw.sparse_names
        self.vocabs, self.buckets, self._indexes, self._arrow_vocabs = {}, {}, {}, {}
        self.dense_mean = self.dense_std = None
        if self.standardize:
            values = self._scale_free_dense(raw.dense)
            self.dense_mean = values.mean(axis=0)
            self.dense_std = np.maximum(values.std(axis=0), 1e-6)  # constant columns stay 0, not NaN
        for j, name in enumerate(raw.sparse_names):
            buckets = self._buckets_for(name)
            if buckets is not None:
                self.buckets[name] = buckets
                continue
            counts = pd.Series(raw.categorical[:, j], dtype=object).value_counts(sort=False)
            kept = counts[counts >= self.min_freq]
            # most frequent first, ties by value, so the mapping is deterministic
            order = sorted(zip(kept.to_numpy().tolist(), kept.index.tolist()), key=lambda cv: (-cv[0], str(cv[1])))
            self.vocabs[name] = Vocabulary(tuple(str(v) for _, v in order), name=name)
        self._fitted = True
        return self

    def fit_transform(self, raw: RawCTR) -> CTRData:
        return self.fit(raw).transform(raw)

    # -- applying ----------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self._fitted

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Rows per sparse feature's table, OOV row included."""
        self._check_fitted()
        return tuple((self.buckets[n] if n in self.buckets else len(self.vocabs[n])) + 1 for n in self.sparse_names)

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise NotFittedError("CTREncoder is not fitted: call fit(raw) or load it with from_json")

    def _index(self, name: str) -> pd.Index:
        idx = self._indexes.get(name)
        if idx is None:
            idx = pd.Index(list(self.vocabs[name].ids), dtype=object)
            self._indexes[name] = idx
        return idx

    def _scale_free_dense(self, values: np.ndarray) -> np.ndarray:
        out = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
        if self.dense_transform == "log1p":
            out = np.log1p(np.maximum(out, 0.0))
        return out

    def transform_dense(self, values: np.ndarray) -> np.ndarray:
        """Raw float64 [N, n_dense] (NaN = missing) -> float32 model input."""
        out = self._scale_free_dense(values)
        if self.dense_mean is not None and self.dense_std is not None:
            out = (out - self.dense_mean) / self.dense_std
        return out.astype(np.float32)

    def transform(self, raw: RawCTR) -> CTRData:
        """Encode rows; unseen or rare categories go to index 0 (never an error)."""
        self._check_fitted()
        dense_cols = _column_positions(raw.dense_names, self.dense_names, "dense", raw.source)
        sparse_cols = _column_positions(raw.sparse_names, self.sparse_names, "categorical", raw.source)
        sparse = np.empty((len(raw), len(self.sparse_names)), dtype=np.int64)
        for j, (name, col) in enumerate(zip(self.sparse_names, sparse_cols)):
            values = raw.categorical[:, col]
            if name in self.buckets:
                sparse[:, j] = _hash_bucket(values, name, self.buckets[name])
            else:
                # distinct values first (one hash pass), then a vocabulary lookup per distinct value only
                codes, uniques = pd.factorize(values.astype(object), use_na_sentinel=False)
                sparse[:, j] = (self._index(name).get_indexer(uniques) + 1)[codes]  # -1 (unseen) -> 0
        dense = self.transform_dense(raw.dense[:, dense_cols])
        return CTRData(dense, sparse, raw.label, self.cardinalities, self.dense_names, self.sparse_names)

    def transform_arrow(self, table: Any, source: str = "<memory>") -> CTRData:
        """Encode a pyarrow Table (dense columns numeric, NaN or null = missing; categorical columns
        non-null text, as :func:`turborec.data.ctr.stream.iter_arrow_table` yields): the same indices
        as :meth:`transform` on those rows, looked up inside Arrow instead of value by value."""
        import pyarrow.compute as pc

        self._check_fitted()
        have = tuple(table.column_names)
        _column_positions(have, self.dense_names, "dense", source)
        _column_positions(have, self.sparse_names, "categorical", source)
        n = table.num_rows
        sparse = np.empty((n, len(self.sparse_names)), dtype=np.int64)
        for j, name in enumerate(self.sparse_names):
            col = table.column(name)
            if name in self.buckets:
                coded = col.combine_chunks().dictionary_encode()  # hash each distinct value once
                codes = _bucket_codes(coded.dictionary.to_pylist(), name, self.buckets[name])
                sparse[:, j] = codes[coded.indices.to_numpy()] + 1
            else:
                found = pc.index_in(col, value_set=self._arrow_vocab(name, col.type))  # null: not in the vocabulary
                sparse[:, j] = pc.fill_null(found, -1).to_numpy() + 1
        dense = np.empty((n, len(self.dense_names)), dtype=np.float64)
        for i, name in enumerate(self.dense_names):
            dense[:, i] = table.column(name).to_numpy()
        return CTRData(self.transform_dense(dense), sparse, None, self.cardinalities, self.dense_names,
                       self.sparse_names)  # fmt: skip

    def _arrow_vocab(self, name: str, kind: Any) -> Any:
        found = self._arrow_vocabs.get((name, kind))
        if found is None:
            import pyarrow as pa

            found = self._arrow_vocabs[(name, kind)] = pa.array(self.vocabs[name].ids, type=kind)
        return found

    # -- JSON --------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "format": ENCODER_FORMAT,
            "min_freq": self.min_freq,
            "hash_buckets": self.hash_buckets,
            "dense_transform": self.dense_transform,
            "standardize": self.standardize,
            "dense_mean": None if self.dense_mean is None else self.dense_mean.tolist(),
            "dense_std": None if self.dense_std is None else self.dense_std.tolist(),
            "dense_names": list(self.dense_names),
            "sparse_names": list(self.sparse_names),
            "buckets": dict(self.buckets),
            "vocabs": {name: list(v.ids) for name, v in self.vocabs.items()},
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CTREncoder:
        try:
            if obj.get("format") != ENCODER_FORMAT:
                raise DataError(f"unknown CTR encoder format {obj.get('format')!r} (expected {ENCODER_FORMAT})")
            enc = cls(
                min_freq=int(obj["min_freq"]),
                hash_buckets=obj["hash_buckets"],
                dense_transform=str(obj["dense_transform"]),
                standardize=bool(obj.get("standardize", False)),
            )
            if enc.standardize:
                enc.dense_mean = np.asarray(obj["dense_mean"], dtype=np.float64)
                enc.dense_std = np.asarray(obj["dense_std"], dtype=np.float64)
            enc.dense_names = tuple(str(n) for n in obj["dense_names"])
            enc.sparse_names = tuple(str(n) for n in obj["sparse_names"])
            enc.buckets = {str(k): int(v) for k, v in obj["buckets"].items()}
            enc.vocabs = {
                str(k): Vocabulary(tuple(str(x) for x in ids), name=str(k)) for k, ids in obj["vocabs"].items()
            }
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"malformed CTR encoder JSON: {exc!r}") from exc
        if enc.standardize and not (
            enc.dense_mean is not None
            and enc.dense_std is not None
            and enc.dense_mean.shape == enc.dense_std.shape == (len(enc.dense_names),)
        ):
            raise DataError("malformed CTR encoder JSON: dense_mean / dense_std do not match dense_names")
        missing = [n for n in enc.sparse_names if n not in enc.vocabs and n not in enc.buckets]
        if missing:
            raise DataError(f"malformed CTR encoder JSON: no vocabulary or buckets for {missing}")
        enc._fitted = True
        return enc


def _column_positions(have: tuple[str, ...], want: tuple[str, ...], what: str, source: str) -> list[int]:
    pos = {n: i for i, n in enumerate(have)}
    missing = [n for n in want if n not in pos]
    if missing:
        raise DataError(f"{what} columns {missing} that the encoder was fitted on are missing", source=source)
    return [pos[n] for n in want]


def _hash_bucket(values: np.ndarray, name: str, buckets: int) -> np.ndarray:
    """Stable (process- and version-independent) hash of (feature, value) into 1..buckets."""
    uniques, inverse = np.unique(values.astype(str), return_inverse=True)
    return _bucket_codes(uniques, name, buckets)[inverse.reshape(-1)] + 1


def _bucket_codes(values: Sequence[Any] | np.ndarray, name: str, buckets: int) -> np.ndarray:
    """0-based bucket of each (distinct) value: blake2b of feature name and value text."""
    salt = name.encode() + b"\x00"
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(salt + str(v).encode(), digest_size=8).digest(), "little") % buckets
         for v in values),
        dtype=np.int64,
        count=len(values),
    )  # fmt: skip
