"""Readers for the common CTR file formats, with errors that name the file and line.

- Criteo (Kaggle DAC): ``label \\t I1..I13 \\t C1..C26`` (40 fields, tab, no header),
  the unlabelled test layout (39 fields), and the CSV-with-header variant
  ``label,I1..I13,C1..C26`` whose integers are written as floats (``260.0``).
- Avazu: CSV ``id,click,hour,C1,banner_pos,...,C21`` with or without the header
  line (``header=None``); ``hour`` (YYMMDDHH) becomes ``hour_of_day`` and
  ``weekday`` features, ``id`` is dropped (unique per row).
- libfm: ``label idx:val idx:val ...``, one-hot form (val 1), the i-th pair of a
  line being field i (Frappe / MovieLens-tag style).

Every loader warns (:class:`DuplicateRowsWarning`) when identical lines occur:
with duplicates a random split puts the same row in train and test.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from turborec.data.ctr.containers import RawCTR
from turborec.data.ctr.libfm_fields import LibfmFields, check_libfm_positions
from turborec.errors import DataError

CRITEO_DENSE = tuple(f"I{i}" for i in range(1, 14))
CRITEO_SPARSE = tuple(f"C{i}" for i in range(1, 27))
AVAZU_COLUMNS = (
    "id", "click", "hour", "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id",
    "app_domain", "app_category", "device_id", "device_ip", "device_model", "device_type", "device_conn_type",
    "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21",
)  # fmt: skip
AVAZU_SPARSE = (*AVAZU_COLUMNS[3:], "hour_of_day", "weekday")

PathLike = str | os.PathLike[str]


class DuplicateRowsWarning(UserWarning):
    """A data file holds identical rows; random splits of it leak rows from train into test."""


def _open_text(path: PathLike) -> io.TextIOBase:
    p = Path(path)
    if not p.is_file():
        raise DataError("no such file", source=str(p))
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", newline="")
    return open(p, encoding="utf-8", newline="")


def _lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end of line), skipping blank lines."""
    try:
        with _open_text(path) as f:
            for number, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield number, line
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise DataError(f"unreadable file ({exc})", source=str(path)) from exc


class _DuplicateCounter:
    def __init__(self) -> None:
        self.hashes: list[int] = []

    def add(self, line: str) -> None:
        self.hashes.append(hash(line))

    def warn(self, source: str) -> None:
        arr = np.asarray(self.hashes, dtype=np.int64)
        n_dup = len(arr) - len(np.unique(arr))
        if n_dup:
            warnings.warn(
                f"{source}: {n_dup} duplicated row(s) out of {len(arr)}; a random split will put copies of a row "
                "in both train and test (deduplicate first, or split by time)",
                DuplicateRowsWarning,
                stacklevel=4,
            )


def _parse_float(text: str, column: str, source: str, line: int) -> float:
    if text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"non-numeric value {text!r} in column {column}", source=source, line=line) from None
    if math.isinf(value):
        raise DataError(f"infinite value {text!r} in column {column}", source=source, line=line)
    return value


def _parse_label(text: str, column: str, source: str, line: int) -> float:
    value = _parse_float(text, column, source, line)
    if value not in (0.0, 1.0):
        raise DataError(f"label {text!r} in column {column} is not 0 or 1", source=source, line=line)
    return value


def _build(
    dense: list[list[float]], cats: list[list[str]], labels: list[float] | None,
    dense_names: tuple[str, ...], sparse_names: tuple[str, ...], source: str,
) -> RawCTR:  # fmt: skip
    cat_arr = np.empty((len(cats), len(sparse_names)), dtype=object)
    if cats:
        cat_arr[:] = cats
    dense_arr = np.asarray(dense, dtype=np.float64).reshape(len(cats), len(dense_names))
    label_arr = None if labels is None else np.asarray(labels, dtype=np.float32)
    return RawCTR(dense_arr, cat_arr, label_arr, dense_names, sparse_names, source)


class _Chunker:
    """Collects parsed rows and hands them out as RawCTR blocks of ``chunk_rows``."""

    def __init__(self, dense_names: tuple[str, ...], sparse_names: tuple[str, ...], labelled: bool,
                 source: str, chunk_rows: int) -> None:  # fmt: skip
        self.names = (dense_names, sparse_names)
        self.labelled = labelled
        self.source = source
        self.chunk_rows = max(int(chunk_rows), 1)
        self._reset()

    def _reset(self) -> None:
        self.dense: list[list[float]] = []
        self.cats: list[list[str]] = []
        self.labels: list[float] | None = [] if self.labelled else None

    def full(self) -> bool:
        return len(self.cats) >= self.chunk_rows

    def take(self) -> RawCTR:
        block = _build(self.dense, self.cats, self.labels, *self.names, self.source)
        self._reset()
        return block

    def added(self, line: str, dups: _DuplicateCounter | None) -> RawCTR | None:
        """After a row of ``line`` was appended: count it for duplicates; a full block to hand out, or None."""
        if dups is not None:
            dups.add(line)
        return self.take() if self.full() else None

    def rest(self) -> Iterator[RawCTR]:
        if self.cats:
            yield self.take()


def _read_all(chunks: Iterator[RawCTR], source: str, dups: _DuplicateCounter) -> RawCTR:
    parts = list(chunks)
    if not parts or not sum(len(p) for p in parts):
        raise DataError("no data rows (empty file)", source=source)
    dups.warn(source)
    return parts[0] if len(parts) == 1 else RawCTR.concat(parts)


def _limited(lines: Iterator[tuple[int, str]], nrows: int | None) -> Iterator[tuple[int, str]]:
    for count, item in enumerate(lines):
        if nrows is not None and count >= nrows:
            return
        yield item


def iter_criteo(
    path: PathLike, *, chunk_rows: int = 65_536, nrows: int | None = None, dups: _DuplicateCounter | None = None
) -> Iterator[RawCTR]:
    """The rows of :func:`read_criteo` in blocks of ``chunk_rows`` (memory bounded by one block)."""
    source = str(path)
    lines = _lines(path)
    first = next(lines, None)
    if first is None:
        raise DataError("empty file", source=source)
    if first[1].startswith("label,") or first[1].startswith("I1,"):
        yield from _criteo_csv_chunks(path, first, lines, nrows, chunk_rows, dups)
        return
    width = len(first[1].split("\t"))
    if width not in (39, 40):
        raise DataError(
            f"expected 40 tab-separated fields (label, 13 integers, 26 categoricals) or 39 (no label), got {width}",
            source=source, line=first[0],
        )  # fmt: skip
    labelled = width == 40
    out = _Chunker(CRITEO_DENSE, CRITEO_SPARSE, labelled, source, chunk_rows)
    offset = 1 if labelled else 0
    for number, line in _limited(_chain(first, lines), nrows):
        fields = line.split("\t")
        if len(fields) != width:
            raise DataError(f"expected {width} tab-separated fields, got {len(fields)}", source=source, line=number)
        if out.labels is not None:
            out.labels.append(_parse_label(fields[0], "label", source, number))
        out.dense.append([_parse_float(fields[offset + i], CRITEO_DENSE[i], source, number) for i in range(13)])
        out.cats.append(fields[offset + 13 :])
        if (block := out.added(line, dups)) is not None:
            yield block
    yield from out.rest()


def read_criteo(path: PathLike, *, nrows: int | None = None) -> RawCTR:
    """Read a Criteo file: tab-separated 40 fields (labelled) or 39 fields (test), or the CSV
    variant with header ``label,I1..I13,C1..C26`` (detected from the first line)."""
    dups = _DuplicateCounter()
    return _read_all(iter_criteo(path, nrows=nrows, dups=dups, chunk_rows=1 << 62), str(path), dups)


def _chain(first: tuple[int, str], rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield first
    yield from rest


def _criteo_csv_chunks(
    path: PathLike, first: tuple[int, str], lines: Iterator[tuple[int, str]], nrows: int | None,
    chunk_rows: int, dups: _DuplicateCounter | None,
) -> Iterator[RawCTR]:  # fmt: skip
    source = str(path)
    header = next(csv.reader([first[1]]))
    missing = [c for c in (*CRITEO_DENSE, *CRITEO_SPARSE) if c not in header]
    if missing:
        raise DataError(f"CSV header lacks Criteo columns {missing}", source=source, line=first[0])
    pos = {name: i for i, name in enumerate(header)}
    out = _Chunker(CRITEO_DENSE, CRITEO_SPARSE, "label" in pos, source, chunk_rows)
    for number, line in _limited(lines, nrows):
        fields = next(csv.reader([line]))
        if len(fields) != len(header):
            raise DataError(
                f"expected {len(header)} fields as in the header, got {len(fields)}", source=source, line=number
            )
        if out.labels is not None:
            out.labels.append(_parse_label(fields[pos["label"]], "label", source, number))
        out.dense.append([_parse_float(fields[pos[c]], c, source, number) for c in CRITEO_DENSE])
        out.cats.append([fields[pos[c]] for c in CRITEO_SPARSE])
        if (block := out.added(line, dups)) is not None:
            yield block
    yield from out.rest()


def _avazu_time(hour: str, source: str, line: int) -> tuple[str, str]:
    try:
        if len(hour) != 8 or not hour.isdigit():
            raise ValueError(hour)
        day = dt.date(2000 + int(hour[:2]), int(hour[2:4]), int(hour[4:6]))
        hh = int(hour[6:])
        if hh > 23:
            raise ValueError(hour)
    except ValueError:
        raise DataError(f"hour {hour!r} is not YYMMDDHH", source=source, line=line) from None
    return str(hh), str(day.weekday())


def iter_avazu(
    path: PathLike, *, header: Literal["infer"] | bool | None = "infer", chunk_rows: int = 65_536,
    nrows: int | None = None, dups: _DuplicateCounter | None = None,
) -> Iterator[RawCTR]:  # fmt: skip
    """The rows of :func:`read_avazu` in blocks of ``chunk_rows``."""
    source = str(path)
    lines = _lines(path)
    first = next(lines, None)
    if first is None:
        raise DataError("empty file", source=source)
    has_header = first[1].startswith("id,") if header == "infer" else bool(header)
    if has_header:
        columns = tuple(next(csv.reader([first[1]])))
        missing = [c for c in AVAZU_COLUMNS if c != "click" and c not in columns]
        if missing:
            raise DataError(f"header lacks Avazu columns {missing}", source=source, line=first[0])
        rows: Iterator[tuple[int, str]] = lines
    else:
        width = len(next(csv.reader([first[1]])))
        if width not in (23, 24):
            raise DataError(f"expected 24 Avazu fields (23 without click), got {width}", source=source, line=first[0])
        columns = AVAZU_COLUMNS if width == 24 else tuple(c for c in AVAZU_COLUMNS if c != "click")
        rows = _chain(first, lines)
    pos = {name: i for i, name in enumerate(columns)}
    out = _Chunker((), AVAZU_SPARSE, "click" in pos, source, chunk_rows)
    plain = [pos[c] for c in AVAZU_SPARSE[:-2]]
    for number, line in _limited(rows, nrows):
        fields = next(csv.reader([line]))
        if len(fields) != len(columns):
            raise DataError(f"expected {len(columns)} fields, got {len(fields)}", source=source, line=number)
        if out.labels is not None:
            out.labels.append(_parse_label(fields[pos["click"]], "click", source, number))
        out.cats.append([fields[i] for i in plain] + list(_avazu_time(fields[pos["hour"]], source, number)))
        out.dense.append([])
        if (block := out.added(line, dups)) is not None:
            yield block
    yield from out.rest()


def read_avazu(path: PathLike, *, header: Literal["infer"] | bool | None = "infer", nrows: int | None = None) -> RawCTR:
    """Read an Avazu CSV. ``header='infer'`` looks for a first line starting with ``id,``;
    ``header=None``/``False`` means the standard 24 columns (23 without ``click``) and no header line."""
    dups = _DuplicateCounter()
    chunks = iter_avazu(path, header=header, nrows=nrows, dups=dups, chunk_rows=1 << 62)
    return _read_all(chunks, str(path), dups)


LIBFM_LABELS = {"1": 1.0, "+1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0, "-1": 0.0, "-1.0": 0.0}


def _libfm_label(text: str, source: str, line: int) -> float:
    value = LIBFM_LABELS.get(text.strip())
    if value is None:
        raise DataError(
            f"label {text!r} is not a click label: libfm CTR rows take 1 (click) or 0 / -1 (no click)",
            source=source, line=line,
        )  # fmt: skip
    return value


def iter_libfm(
    path: PathLike, *, chunk_rows: int = 65_536, nrows: int | None = None, dups: _DuplicateCounter | None = None
) -> Iterator[RawCTR]:
    """One-hot libfm lines in blocks of ``chunk_rows``: ``label idx:1 idx:1 ...``; the i-th pair is
    column ``f{i}`` holding the feature id (see :func:`read_libfm` for the field checks)."""
    source = str(path)
    width: int | None = None
    out: _Chunker | None = None
    for number, line in _limited(_lines(path), nrows):
        tokens = line.split()
        pairs = tokens[1:]
        if width is None:
            width = len(pairs)
            out = _Chunker((), tuple(f"f{i}" for i in range(width)), True, source, chunk_rows)
        assert out is not None and out.labels is not None
        if len(pairs) != width or not pairs:
            raise DataError(
                f"expected {width} idx:val pairs as on the first line, got {len(pairs)}", source=source, line=number
            )
        label = _libfm_label(tokens[0], source, number)
        row = []
        for pair in pairs:
            idx, sep, val = pair.partition(":")
            if not sep or not idx:
                raise DataError(f"malformed pair {pair!r} (expected idx:val)", source=source, line=number)
            if _parse_float(val, "value", source, number) != 1.0:
                raise DataError(
                    f"value {val!r} in {pair!r}: only one-hot libfm (value 1) is supported", source=source, line=number
                )
            if not idx.isdigit():
                raise DataError(f"feature id {idx!r} in {pair!r} is not a non-negative integer",
                                source=source, line=number)  # fmt: skip
            row.append(idx)
        out.labels.append(label)
        out.cats.append(row)
        out.dense.append([])
        if (block := out.added(line, dups)) is not None:
            yield block
    if out is not None:
        yield from out.rest()


def read_libfm(path: PathLike, *, nrows: int | None = None, fields: LibfmFields | None = None) -> RawCTR:
    """Read one-hot libfm lines ``label idx:1 idx:1 ...`` (Frappe / MovieLens-tag style).

    Labels: 1 (or +1) is a click, 0 or -1 is not; anything else (0.5, 2) is a DataError.
    libfm rows do not name their fields. Without ``fields`` the i-th pair of a line is field
    ``f{i}``, and the file must allow that reading: every position holds ids from its own
    range, disjoint from every other position's (as libfm files written one field after another
    are), checked over all lines (DataError naming the overlapping positions otherwise). With
    ``fields`` (a :class:`LibfmFields` map of id ranges to field names), each id is assigned to
    the field whose range holds it, whatever its position, and every line must hold one id of
    every field.
    """
    dups = _DuplicateCounter()
    raw = _read_all(iter_libfm(path, nrows=nrows, dups=dups, chunk_rows=1 << 62), str(path), dups)
    return fields.assign(raw) if fields is not None else check_libfm_positions(raw)
