"""Id <-> index vocabularies that survive save/load (as JSON, never pickled)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from turborec.errors import DataError, UnknownIdError


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Maps external ids (str or int, kept as given) to dense indices 0..n-1."""

    ids: tuple[Any, ...]
    name: str = "id"

    def __post_init__(self) -> None:
        index = {v: i for i, v in enumerate(self.ids)}
        if len(index) != len(self.ids):
            raise DataError(f"vocabulary '{self.name}' has duplicated ids")
        object.__setattr__(self, "_index", index)

    @classmethod
    def _from_unique(cls, ids: tuple[Any, ...], name: str = "id") -> Vocabulary:
        """Build from ids the caller guarantees unique (factorized, sliced, ranges), skipping the
        duplicate check; the lookup dict is then built on first use, which keeps vocabularies of
        millions of ids that are never looked up (synthetic data, filtered subsets) cheap."""
        vocab = object.__new__(cls)
        object.__setattr__(vocab, "ids", ids)
        object.__setattr__(vocab, "name", name)
        return vocab

    @property
    def _lookup(self) -> dict[Any, int]:
        index: dict[Any, int] | None = self.__dict__.get("_index")
        if index is None:
            index = {v: i for i, v in enumerate(self.ids)}
            object.__setattr__(self, "_index", index)
        return index

    def take(self, indices: np.ndarray | Sequence[int]) -> Vocabulary:
        """The sub-vocabulary of the given indices, in that order (ids stay unique)."""
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(self.ids)):
            raise DataError(f"vocabulary '{self.name}': index out of range in take()")
        if len(np.unique(idx)) != len(idx):
            raise DataError(f"vocabulary '{self.name}': take() needs distinct indices")
        return Vocabulary._from_unique(tuple(_py(v) for v in self.array[idx].tolist()), name=self.name)

    @classmethod
    def from_values(cls, values: Iterable[Any], name: str = "id") -> Vocabulary:
        """Build from raw values in order of first appearance."""
        arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values)
        _, first = np.unique(arr, return_index=True)
        ordered = arr[np.sort(first)]
        return cls(tuple(_py(v) for v in ordered.tolist()), name=name)

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, Vocabulary) and self.ids == other.ids)

    def __hash__(self) -> int:
        return hash((len(self.ids), self.ids[:8]))

    def __contains__(self, value: object) -> bool:
        return value in self._lookup

    def index(self, value: Any) -> int:
        lookup = self._lookup
        try:
            return lookup[value]
        except KeyError:
            alt = _coerce(value)
            if alt is not None and alt in lookup:
                return lookup[alt]
            raise UnknownIdError(f"unknown {self.name} id {value!r}") from None

    def get(self, value: Any, default: int = -1) -> int:
        try:
            return self.index(value)
        except UnknownIdError:
            return default

    def encode(self, values: Sequence[Any] | np.ndarray, *, unknown: str = "raise") -> np.ndarray:
        """External ids -> int64 indices. ``unknown='raise'`` or ``'minus1'``."""
        if len(values) >= _VECTOR_MIN:
            return self._encode_many(values, unknown)
        if unknown == "raise":
            return np.fromiter((self.index(v) for v in values), dtype=np.int64, count=len(values))
        return np.fromiter((self.get(v) for v in values), dtype=np.int64, count=len(values))

    def _encode_many(self, values: Sequence[Any] | np.ndarray, unknown: str) -> np.ndarray:
        # Hash lookup in pandas' C index; only the misses go through index()/get() so the
        # str <-> int coercion and the error for unknown ids stay exactly as for small inputs.
        import pandas as pd

        pd_index = self.__dict__.get("_pd_index")
        if pd_index is None:
            pd_index = pd.Index(self.array)
            object.__setattr__(self, "_pd_index", pd_index)
        arr = values if isinstance(values, np.ndarray) else np.asarray(list(values), dtype=object)
        codes = np.asarray(pd_index.get_indexer(arr), dtype=np.int64)
        lookup = self.index if unknown == "raise" else self.get
        for j in np.flatnonzero(codes < 0).tolist():
            codes[j] = lookup(_py(arr[j]))
        return codes

    def decode(self, indices: np.ndarray) -> np.ndarray:
        """Indices -> external ids (object array when ids are strings)."""
        arr = self.array
        return arr[np.asarray(indices, dtype=np.int64)]

    @property
    def array(self) -> np.ndarray:
        arr = self.__dict__.get("_array")
        if arr is None:
            arr = np.asarray(self.ids, dtype=object if any(isinstance(v, str) for v in self.ids[:1]) else None)
            object.__setattr__(self, "_array", arr)
        return arr

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ids": list(self.ids)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Vocabulary:
        try:
            return cls(tuple(obj["ids"]), name=str(obj.get("name", "id")))
        except (KeyError, TypeError) as exc:
            raise DataError(f"malformed vocabulary: {exc}") from exc

    @classmethod
    def range(cls, n: int, name: str = "id") -> Vocabulary:
        return cls._from_unique(tuple(range(n)), name=name)


def unknown_summary(name: str, ids: Sequence[Any], limit: int = 10) -> str:
    """'3 unknown user id(s): 7, 9, 11' naming at most ``limit`` of them."""
    shown = ", ".join(str(v) for v in list(ids)[:limit])
    more = f", ... ({len(ids) - limit} more)" if len(ids) > limit else ""
    return f"{len(ids):,} unknown {name} id(s): {shown}{more}"


_VECTOR_MIN = 256  # below this many ids a dict lookup per id beats building arrays


def _py(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def _coerce(value: Any) -> Any:
    """Let '42' find 42 and 42 find '42' (ids typed on a command line are strings)."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return None
