"""Which field a libfm feature id belongs to.

libfm rows (``label idx:1 idx:1 ...``) do not name their fields. Two readings are supported:

- **by position** (default): the i-th pair of every line is field ``f{i}``. That is only right
  when each position holds ids from one field's id range on every line, as files written one
  field after another are (Frappe, the MovieLens-tag set): :func:`check_libfm_positions`
  verifies that the positions' id ranges are pairwise disjoint over the whole file and refuses
  the file otherwise, since overlapping ranges mean the same id would be a value of two fields.
- **by a field map** (:class:`LibfmFields`, ``--fields FILE``): a JSON object of field name ->
  ``[first_id, last_id]``; each id goes to the field whose range holds it, whatever its position,
  and every line must hold exactly one id of every field.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from turborec.data.ctr.containers import RawCTR
from turborec.errors import DataError


def _ids(raw: RawCTR) -> np.ndarray:
    try:
        return raw.categorical.astype(np.int64)
    except (ValueError, OverflowError):
        raise DataError("libfm feature ids must be integers", source=raw.source) from None


def check_libfm_positions(raw: RawCTR) -> RawCTR:
    """``raw`` unchanged when every position's ids form a range disjoint from every other position's
    (so position = field on every line); DataError naming two overlapping positions otherwise."""
    if not len(raw) or raw.categorical.shape[1] < 2:
        return raw
    ids = _ids(raw)
    low, high = ids.min(axis=0), ids.max(axis=0)
    order = np.argsort(low, kind="stable")
    for a, b in itertools.pairwise(order):
        if high[a] >= low[b]:
            rows = np.flatnonzero((ids[:, b] <= high[a]) & (ids[:, b] >= low[a]))
            raise DataError(
                f"pair positions {a + 1} and {b + 1} hold overlapping feature ids ({low[a]}..{high[a]} and "
                f"{low[b]}..{high[b]}; e.g. data row {int(rows[0]) + 1 if len(rows) else '?'}), so a position is "
                "not one field on every line: give a field map (--fields FILE: JSON of name -> [first_id, last_id])",
                source=raw.source,
            )
    return raw


@dataclass(frozen=True)
class LibfmFields:
    """Field name -> inclusive feature-id range, ranges disjoint."""

    names: tuple[str, ...]
    first: tuple[int, ...]
    last: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.names or not (len(self.names) == len(self.first) == len(self.last)):
            raise DataError("a libfm field map needs at least one field, each with [first_id, last_id]")
        spans = sorted(zip(self.first, self.last, self.names))
        for lo, hi, name in spans:
            if lo < 0 or hi < lo:
                raise DataError(f"libfm field map: field {name!r} has range [{lo}, {hi}]; need 0 <= first <= last")
        for (_, hi, a), (lo, _, b) in itertools.pairwise(spans):
            if lo <= hi:
                raise DataError(f"libfm field map: the ranges of fields {a!r} and {b!r} overlap")

    @classmethod
    def from_mapping(cls, obj: Mapping[str, object], source: str = "<field map>") -> LibfmFields:
        names, first, last = [], [], []
        for name, span in obj.items():
            if not (isinstance(span, (list, tuple)) and len(span) == 2 and all(isinstance(v, int) for v in span)):
                raise DataError(f"field {name!r}: expected [first_id, last_id] integers, got {span!r}", source=source)
            names.append(str(name))
            first.append(int(span[0]))
            last.append(int(span[1]))
        try:
            return cls(tuple(names), tuple(first), tuple(last))
        except DataError as exc:
            raise DataError(str(exc), source=source) from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> LibfmFields:
        try:
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
        except FileNotFoundError:
            raise DataError("no such field map file", source=str(path)) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"not a JSON field map ({exc})", source=str(path)) from None
        if not isinstance(obj, dict):
            raise DataError("a field map is a JSON object of name -> [first_id, last_id]", source=str(path))
        return cls.from_mapping(obj, source=str(path))

    def to_dict(self) -> dict[str, list[int]]:
        return {n: [lo, hi] for n, lo, hi in zip(self.names, self.first, self.last)}

    def assign(self, raw: RawCTR) -> RawCTR:
        """Columns renamed and reordered to the map's fields; DataError for an id outside every range
        or a row without exactly one id per field."""
        ids = _ids(raw)
        if ids.shape[1] != len(self.names):
            raise DataError(
                f"rows have {ids.shape[1]} pairs but the field map names {len(self.names)} fields", source=raw.source
            )
        order = np.argsort(self.first)
        starts = np.asarray(self.first)[order]
        ends = np.asarray(self.last)[order]
        slot = np.searchsorted(starts, ids, side="right") - 1
        outside = (slot < 0) | (ids > ends[np.maximum(slot, 0)])
        if outside.any():
            r, c = np.argwhere(outside)[0]
            raise DataError(f"data row {r + 1}: feature id {ids[r, c]} is in no field of the map", source=raw.source)
        field_of = order[slot]  # map position of each id
        by_field = np.argsort(field_of, axis=1, kind="stable")
        sorted_fields = np.take_along_axis(field_of, by_field, axis=1)
        bad = (sorted_fields != np.arange(len(self.names))).any(axis=1)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise DataError(f"data row {r + 1} does not hold exactly one id of every mapped field", source=raw.source)
        cats = np.take_along_axis(raw.categorical, by_field, axis=1)
        return RawCTR(raw.dense, cats, raw.label, raw.dense_names, self.names, raw.source)


__all__ = ["LibfmFields", "check_libfm_positions"]
