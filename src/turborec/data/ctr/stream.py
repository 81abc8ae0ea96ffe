"""Any CTR file as a stream of row blocks, so scoring a large file holds one block at a time.

Formats: ``criteo``, ``avazu``, ``libfm`` (the readers in :mod:`.loaders`) and ``csv`` /
``parquet``: a table with a header naming the model's features (the encoder's dense and
sparse column names) and, optionally, a ``label`` or ``click`` column of 0/1. Other
columns are ignored; a missing feature column is a DataError naming it.

Tables are read with pyarrow when it is installed (Parquet needs it; CSV falls back to
pandas without it, or for a compression pyarrow cannot decode): :func:`iter_arrow_table`
yields Arrow tables of only the model's columns, which
:meth:`~turborec.data.ctr.encoder.CTREncoder.transform_arrow` encodes without turning each
value into a Python string (the fast path of ``turborec predict``); :func:`iter_table`
yields the same rows as :class:`RawCTR` blocks. Either way a categorical value is its text
("" when missing; a number becomes its decimal text, as pandas' ``str()`` writes it) and a
dense value a float (NaN when missing).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from turborec.data.ctr.containers import RawCTR
from turborec.data.ctr.libfm_fields import LibfmFields
from turborec.data.ctr.loaders import iter_avazu, iter_criteo, iter_libfm
from turborec.errors import ConfigError, DataError

STREAM_FORMATS = ("criteo", "avazu", "libfm", "csv", "parquet")
LABEL_COLUMNS = ("label", "click")
# compressions pandas reads and pyarrow's CSV reader does not: such files go through pandas
_PANDAS_ONLY_SUFFIXES = (".zip", ".xz", ".tar", ".tgz")
_CSV_BLOCK_BYTES = 4 << 20


def _checked_label(values: pd.Series, name: str, source: str, first_row: int) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isin(numbers, (0.0, 1.0)))
    if len(bad):
        value = str(values.iloc[int(bad[0])])
        raise DataError(f"data row {first_row + int(bad[0]) + 1}: {name} {value!r} is not 0 or 1", source=source)
    return numbers.astype(np.float32)


def _missing_columns(have: Sequence[str], dense: Sequence[str], sparse: Sequence[str], source: str) -> None:
    missing = [c for c in (*dense, *sparse) if c not in have]
    if missing:
        raise DataError(f"columns {missing} that the model was trained on are missing", source=source)


# -- pandas (CSV without pyarrow) ---------------------------------------------------
def _table_block(
    frame: pd.DataFrame, dense: Sequence[str], sparse: Sequence[str], source: str, first_row: int
) -> RawCTR:
    _missing_columns(list(frame.columns), dense, sparse, source)
    try:
        dense_arr = frame[list(dense)].to_numpy(dtype=np.float64, na_value=np.nan) if dense else None
    except (ValueError, TypeError):
        name = next(c for c in dense if pd.to_numeric(frame[c], errors="coerce").isna().sum() > frame[c].isna().sum())
        raise DataError(f"dense column {name!r} holds non-numeric values (rows from {first_row + 1})",
                        source=source) from None  # fmt: skip
    if dense_arr is None:
        dense_arr = np.empty((len(frame), 0), dtype=np.float64)
    cats = np.empty((len(frame), len(sparse)), dtype=object)
    for j, name in enumerate(sparse):
        cats[:, j] = _pandas_text(frame[name]).to_numpy(dtype=object)
    label = None
    for name in LABEL_COLUMNS:
        if name in frame.columns:
            label = _checked_label(frame[name], name, source, first_row)
            break
    return RawCTR(dense_arr, cats, label, tuple(dense), tuple(sparse), source)


def _pandas_text(col: pd.Series) -> pd.Series:
    """A categorical column as text: the encoder's vocabularies hold strings, missing is ""."""
    if col.dtype != object:
        return col.astype(object).where(col.notna(), "").astype(str)
    return col.fillna("") if col.isna().any() else col


def _iter_pandas_csv(
    path: str | os.PathLike[str], dense: Sequence[str], sparse: Sequence[str], chunk_rows: int, labels: bool
) -> Iterator[RawCTR]:
    source = str(path)
    wanted = set(dense) | set(sparse) | (set(LABEL_COLUMNS) if labels else set())
    start = 0
    try:
        reader = pd.read_csv(path, chunksize=chunk_rows, dtype={name: str for name in sparse}, keep_default_na=False,
                             na_values={name: [""] for name in dense}, usecols=lambda c: c in wanted)  # fmt: skip
        for frame in reader:
            yield _table_block(frame, dense, sparse, source, start)
            start += len(frame)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"unreadable CSV ({exc})", source=source) from None


# -- pyarrow ------------------------------------------------------------------------
def arrow_reads(path: str | os.PathLike[str], fmt: str) -> bool:
    """Whether :func:`iter_arrow_table` reads this csv / parquet file (pyarrow installed, a compression it decodes)."""
    if fmt not in ("csv", "parquet"):
        return False
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return fmt == "parquet" or not str(path).lower().endswith(_PANDAS_ONLY_SUFFIXES)


def _arrow_text(col: Any) -> Any:
    """A categorical Arrow column as non-null text, the same text the pandas path gives."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = col.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pc.fill_null(col, "") if col.null_count else col
    if pa.types.is_integer(kind) and not col.null_count:
        return pc.cast(col, pa.string())  # decimal text, as str(int)
    # floats, booleans, integers with gaps (pandas reads those as float), ...: pandas' own str()
    return pa.chunked_array([pa.array(_pandas_text(col.to_pandas()).to_numpy(dtype=object), type=pa.string())])


def _arrow_dense(col: Any, name: str, source: str, first_row: int) -> Any:
    import pyarrow as pa

    if pa.types.is_float64(col.type):
        return col
    try:
        return col.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(f"dense column {name!r} holds non-numeric values (rows from {first_row + 1})",
                        source=source) from None  # fmt: skip


def _rechunked(batches: Iterator[Any], rows: int, schema: Any) -> Iterator[Any]:
    """Arrow tables of exactly ``rows`` rows (the last one shorter) from record batches of any length."""
    import pyarrow as pa

    pending: list[Any] = []
    have = 0
    for batch in batches:
        if not len(batch):
            continue
        pending.append(batch)
        have += len(batch)
        while have >= rows:
            table = pa.Table.from_batches(pending, schema=schema)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, have = rest.to_batches(), len(rest)
    if have:
        yield pa.Table.from_batches(pending, schema=schema)


def _csv_header(path: str | os.PathLike[str]) -> list[str]:
    """The column names on a CSV file's first line (decompressed as pyarrow's reader would)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    line = b""
    with pa.input_stream(str(path), compression="detect") as stream:
        while b"\n" not in line and len(line) < _CSV_BLOCK_BYTES:
            piece = stream.read(1 << 16)
            if not piece:
                break
            line += piece
    line = line.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        raise DataError("empty CSV file: no header line", source=str(path))
    return list(pcsv.read_csv(io.BytesIO(line + b"\n")).column_names)


def _csv_error(exc: Exception, path: str | os.PathLike[str], dense: Sequence[str]) -> DataError:
    """pyarrow's CSV error as one line naming the dense column that holds a non-number, when that is the cause."""
    source = str(path)
    found = re.search(r"CSV column #(\d+): Row #(\d+): CSV conversion error to double: invalid value '(.*)'", str(exc))
    if found:
        try:
            name = _csv_header(path)[int(found.group(1))]
        except Exception:  # the header itself is unreadable: the plain message below says why
            name = ""
        if name in dense:
            return DataError(f"dense column {name!r} holds non-numeric value {found.group(3)!r} "
                             f"(line {found.group(2)})", source=source)  # fmt: skip
    return DataError(f"unreadable CSV ({exc})", source=source)


def _arrow_batches(
    path: str | os.PathLike[str], fmt: str, dense: Sequence[str], sparse: Sequence[str], chunk_rows: int, labels: bool
) -> tuple[Iterator[Any], Any]:
    """(record batches of the wanted columns, their schema); missing feature columns are a DataError."""
    import pyarrow as pa

    source = str(path)
    wanted = [*dense, *sparse, *(LABEL_COLUMNS if labels else ())]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            handle = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises its own ArrowInvalid for a non-parquet file
            raise DataError(f"not a Parquet file ({exc})", source=source) from None
        _missing_columns(handle.schema_arrow.names, dense, sparse, source)
        columns = [c for c in handle.schema_arrow.names if c in wanted]
        schema = pa.schema([handle.schema_arrow.field(c) for c in columns])
        return handle.iter_batches(batch_size=chunk_rows, columns=columns, use_threads=False), schema
    import pyarrow.csv as pcsv

    # labels as text: _checked_label names the first value that is not 0 or 1, whatever it is
    types = {**{name: pa.string() for name in wanted}, **{name: pa.float64() for name in dense}}
    try:
        header = _csv_header(path)
        _missing_columns(header, dense, sparse, source)
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=_CSV_BLOCK_BYTES, use_threads=False),
            # only "" is missing: "NA", "null", ... are categorical values like any other
            convert_options=pcsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=False,
                                                include_columns=[c for c in wanted if c in header]),
        )  # fmt: skip
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # ArrowInvalid, ArrowKeyError, bad gzip...
        raise _csv_error(exc, path, dense) from None

    def batches() -> Iterator[Any]:
        try:
            yield from reader
        except (pa.ArrowException, OSError) as exc:
            raise _csv_error(exc, path, dense) from None

    return batches(), reader.schema


def iter_arrow_table(
    path: str | os.PathLike[str],
    fmt: str,
    dense: Sequence[str],
    sparse: Sequence[str],
    *,
    chunk_rows: int = 65_536,
    labels: bool = True,
) -> Iterator[Any]:
    """A CSV or Parquet table as pyarrow Tables of ``chunk_rows`` rows holding only the feature columns
    (dense float64, NaN-able; categorical non-null text) and, when ``labels`` and the file has one,
    a checked float32 ``label`` column (from ``label`` or ``click``). Needs pyarrow (see :func:`arrow_reads`)."""
    import pyarrow as pa

    source = str(path)
    if not Path(path).is_file():
        raise DataError("no such file", source=source)
    batches, schema = _arrow_batches(path, fmt, dense, sparse, chunk_rows, labels)
    label_name = next((c for c in LABEL_COLUMNS if labels and c in schema.names), None)
    start = 0
    for table in _rechunked(batches, chunk_rows, schema):
        columns = [_arrow_dense(table.column(c), c, source, start) for c in dense]
        columns += [_arrow_text(table.column(c)) for c in sparse]
        names = [*dense, *sparse]
        if label_name is not None:
            values = table.column(label_name).to_pandas()
            columns.append(pa.array(_checked_label(values, label_name, source, start)))
            names.append("label")
        yield pa.Table.from_arrays(columns, names=names)
        start += table.num_rows


def _raw_from_arrow(table: Any, dense: Sequence[str], sparse: Sequence[str], source: str) -> RawCTR:
    n = table.num_rows
    dense_arr = np.empty((n, len(dense)), dtype=np.float64)
    for i, name in enumerate(dense):
        dense_arr[:, i] = table.column(name).to_numpy()
    cats = np.empty((n, len(sparse)), dtype=object)
    for j, name in enumerate(sparse):
        cats[:, j] = table.column(name).to_numpy()
    label = table.column("label").to_numpy() if "label" in table.column_names else None
    return RawCTR(dense_arr, cats, label, tuple(dense), tuple(sparse), source)


def iter_table(
    path: str | os.PathLike[str],
    fmt: str,
    dense: Sequence[str],
    sparse: Sequence[str],
    *,
    chunk_rows: int = 65_536,
    labels: bool = True,
) -> Iterator[RawCTR]:
    """A CSV or Parquet table of feature columns, ``chunk_rows`` rows per block (labels too if ``labels``)."""
    source = str(path)
    if not Path(path).is_file():
        raise DataError("no such file", source=source)
    if arrow_reads(path, fmt):
        for table in iter_arrow_table(path, fmt, dense, sparse, chunk_rows=chunk_rows, labels=labels):
            yield _raw_from_arrow(table, dense, sparse, source)
    elif fmt == "csv":
        yield from _iter_pandas_csv(path, dense, sparse, chunk_rows, labels)
    else:  # pragma: no cover - the parquet extra is installed in CI
        from turborec.errors import DependencyError

        raise DependencyError("pyarrow", "parquet")


def iter_ctr_file(
    path: str | os.PathLike[str],
    fmt: str,
    *,
    dense: Sequence[str] = (),
    sparse: Sequence[str] = (),
    chunk_rows: int = 65_536,
    fields: LibfmFields | None = None,
) -> Iterator[RawCTR]:
    """Blocks of at most ``chunk_rows`` rows of a CTR file in ``fmt`` (see the module docstring);
    ``dense`` / ``sparse``: the feature columns a csv / parquet table must have."""
    check_stream_format(fmt, chunk_rows)
    if fmt == "criteo":
        yield from iter_criteo(path, chunk_rows=chunk_rows)
    elif fmt == "avazu":
        yield from iter_avazu(path, chunk_rows=chunk_rows)
    elif fmt == "libfm":
        for block in iter_libfm(path, chunk_rows=chunk_rows):
            yield fields.assign(block) if fields is not None else block
    else:
        yield from iter_table(path, fmt, dense, sparse, chunk_rows=chunk_rows)


def check_stream_format(fmt: str, chunk_rows: int) -> None:
    if fmt not in STREAM_FORMATS:
        raise ConfigError(f"--format {fmt!r}: CTR rows are read from {', '.join(STREAM_FORMATS)}")
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be >= 1, got {chunk_rows}")


__all__ = ["STREAM_FORMATS", "arrow_reads", "check_stream_format", "iter_arrow_table", "iter_ctr_file", "iter_table"]
