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


def _finish(
    dense: list[list[float]], cats: list[list[str]], labels: list[float] | None,
    dense_names: tuple[str, ...], sparse_names: tuple[str, ...], source: str, dups: _DuplicateCounter,
) -> RawCTR:  # fmt: skip
    if not cats:
        raise DataError("no data rows (empty file)", source=source)
    dups.warn(source)
    cat_arr = np.empty((len(cats), len(sparse_names)), dtype=object)
    cat_arr[:] = cats
    dense_arr = np.asarray(dense, dtype=np.float64).reshape(len(cats), len(dense_names))
    label_arr = None if labels is None else np.asarray(labels, dtype=np.float32)
    return RawCTR(dense_arr, cat_arr, label_arr, dense_names, sparse_names, source)


def read_criteo(path: PathLike, *, nrows: int | None = None) -> RawCTR:
    """Read a Criteo file: tab-separated 40 fields (labelled) or 39 fields (test), or the CSV
    variant with header ``label,I1..I13,C1..C26`` (detected from the first line)."""
    source = str(path)
    lines = _lines(path)
    first = next(lines, None)
    if first is None:
        raise DataError("empty file", source=source)
    if first[1].startswith("label,") or first[1].startswith("I1,"):
        return _read_criteo_csv(path, first, lines, nrows)
    width = len(first[1].split("\t"))
    if width not in (39, 40):
        raise DataError(
            f"expected 40 tab-separated fields (label, 13 integers, 26 categoricals) or 39 (no label), got {width}",
            source=source, line=first[0],
        )  # fmt: skip
    labelled = width == 40
    dense: list[list[float]] = []
    cats: list[list[str]] = []
    labels: list[float] | None = [] if labelled else None
    dups = _DuplicateCounter()
    offset = 1 if labelled else 0
    for number, line in _chain(first, lines):
        if nrows is not None and len(cats) >= nrows:
            break
        fields = line.split("\t")
        if len(fields) != width:
            raise DataError(f"expected {width} tab-separated fields, got {len(fields)}", source=source, line=number)
        if labels is not None:
            labels.append(_parse_label(fields[0], "label", source, number))
        dense.append([_parse_float(fields[offset + i], CRITEO_DENSE[i], source, number) for i in range(13)])
        cats.append(fields[offset + 13 :])
        dups.add(line)
    return _finish(dense, cats, labels, CRITEO_DENSE, CRITEO_SPARSE, source, dups)


def _chain(first: tuple[int, str], rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield first
    yield from rest


def _read_criteo_csv(
    path: PathLike, first: tuple[int, str], lines: Iterator[tuple[int, str]], nrows: int | None
) -> RawCTR:
    source = str(path)
    header = next(csv.reader([first[1]]))
    missing = [c for c in (*CRITEO_DENSE, *CRITEO_SPARSE) if c not in header]
    if missing:
        raise DataError(f"CSV header lacks Criteo columns {missing}", source=source, line=first[0])
    pos = {name: i for i, name in enumerate(header)}
    labels: list[float] | None = [] if "label" in pos else None
    dense: list[list[float]] = []
    cats: list[list[str]] = []
    dups = _DuplicateCounter()
    for number, line in lines:
        if nrows is not None and len(cats) >= nrows:
            break
        fields = next(csv.reader([line]))
        if len(fields) != len(header):
            raise DataError(
                f"expected {len(header)} fields as in the header, got {len(fields)}", source=source, line=number
            )
        if labels is not None:
            labels.append(_parse_label(fields[pos["label"]], "label", source, number))
        dense.append([_parse_float(fields[pos[c]], c, source, number) for c in CRITEO_DENSE])
        cats.append([fields[pos[c]] for c in CRITEO_SPARSE])
        dups.add(line)
    return _finish(dense, cats, labels, CRITEO_DENSE, CRITEO_SPARSE, source, dups)


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


def read_avazu(path: PathLike, *, header: Literal["infer"] | bool | None = "infer", nrows: int | None = None) -> RawCTR:
    """Read an Avazu CSV. ``header='infer'`` looks for a first line starting with ``id,``;
    ``header=None``/``False`` means the standard 24 columns (23 without ``click``) and no header line."""
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
    labels: list[float] | None = [] if "click" in pos else None
    cats: list[list[str]] = []
    dups = _DuplicateCounter()
    plain = [pos[c] for c in AVAZU_SPARSE[:-2]]
    for number, line in rows:
        if nrows is not None and len(cats) >= nrows:
            break
        fields = next(csv.reader([line]))
        if len(fields) != len(columns):
            raise DataError(f"expected {len(columns)} fields, got {len(fields)}", source=source, line=number)
        if labels is not None:
            labels.append(_parse_label(fields[pos["click"]], "click", source, number))
        cats.append([fields[i] for i in plain] + list(_avazu_time(fields[pos["hour"]], source, number)))
        dups.add(line)
    return _finish([], cats, labels, (), AVAZU_SPARSE, source, dups)


def read_libfm(path: PathLike, *, nrows: int | None = None) -> RawCTR:
    """Read one-hot libfm lines ``label idx:1 idx:1 ...``; the i-th pair is field ``f{i}``.

    Labels > 0 are clicks, labels <= 0 (libfm writes -1) are not. Every line must
    have the same number of pairs, and every value must be 1 (DataError otherwise).
    """
    source = str(path)
    labels: list[float] = []
    cats: list[list[str]] = []
    dups = _DuplicateCounter()
    width: int | None = None
    for number, line in _lines(path):
        if nrows is not None and len(cats) >= nrows:
            break
        tokens = line.split()
        label = _parse_float(tokens[0], "label", source, number)
        if math.isnan(label):
            raise DataError("missing label", source=source, line=number)
        pairs = tokens[1:]
        if width is None:
            width = len(pairs)
        if len(pairs) != width or not pairs:
            raise DataError(
                f"expected {width} idx:val pairs as on the first line, got {len(pairs)}", source=source, line=number
            )
        row = []
        for pair in pairs:
            idx, sep, val = pair.partition(":")
            if not sep or not idx:
                raise DataError(f"malformed pair {pair!r} (expected idx:val)", source=source, line=number)
            if _parse_float(val, "value", source, number) != 1.0:
                raise DataError(
                    f"value {val!r} in {pair!r}: only one-hot libfm (value 1) is supported", source=source, line=number
                )
            row.append(idx)
        labels.append(1.0 if label > 0 else 0.0)
        cats.append(row)
        dups.add(line)
    names = tuple(f"f{i}" for i in range(width or 0))
    return _finish([], cats, labels, (), names, source, dups)
