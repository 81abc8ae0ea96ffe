"""Id <-> index vocabularies that survive save/load (as JSON, never pickled)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from turborec.errors import DataError, UnknownIdError


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Maps external ids (str or int, kept as given) to dense indices 0..n-1."""

    ids: tuple[Any, ...]
    name: str = "id"
    _index: dict[Any, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {v: i for i, v in enumerate(self.ids)}
        if len(index) != len(self.ids):
            raise DataError(f"vocabulary '{self.name}' has duplicated ids")
        object.__setattr__(self, "_index", index)

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
        return isinstance(other, Vocabulary) and self.ids == other.ids

    def __hash__(self) -> int:
        return hash((len(self.ids), self.ids[:8]))

    def __contains__(self, value: object) -> bool:
        return value in self._index

    def index(self, value: Any) -> int:
        try:
            return self._index[value]
        except KeyError:
            alt = _coerce(value)
            if alt is not None and alt in self._index:
                return self._index[alt]
            raise UnknownIdError(f"unknown {self.name} id {value!r}") from None

    def get(self, value: Any, default: int = -1) -> int:
        try:
            return self.index(value)
        except UnknownIdError:
            return default

    def encode(self, values: Sequence[Any] | np.ndarray, *, unknown: str = "raise") -> np.ndarray:
        """External ids -> int64 indices. ``unknown='raise'`` or ``'minus1'``."""
        if unknown == "raise":
            return np.fromiter((self.index(v) for v in values), dtype=np.int64, count=len(values))
        return np.fromiter((self.get(v) for v in values), dtype=np.int64, count=len(values))

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
        return cls(tuple(range(n)), name=name)


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
