"""Any CTR file as a stream of :class:`RawCTR` blocks, so scoring a large file holds one block at a time.

Formats: ``criteo``, ``avazu``, ``libfm`` (the readers in :mod:`.loaders`) and ``csv`` /
``parquet``: a table with a header naming the model's features (the encoder's dense and
sparse column names) and, optionally, a ``label`` or ``click`` column of 0/1. Other
columns are ignored; a missing feature column is a DataError naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from turborec.data.ctr.containers import RawCTR
from turborec.data.ctr.libfm_fields import LibfmFields
from turborec.data.ctr.loaders import iter_avazu, iter_criteo, iter_libfm
from turborec.errors import ConfigError, DataError

STREAM_FORMATS = ("criteo", "avazu", "libfm", "csv", "parquet")
LABEL_COLUMNS = ("label", "click")


def _table_block(frame: pd.DataFrame, dense: Sequence[str], sparse: Sequence[str], source: str, first_row: int) -> RawCTR:
    missing = [c for c in (*dense, *sparse) if c not in frame.columns]
    if missing:
        raise DataError(f"columns {missing} that the model was trained on are missing", source=source)
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
        col = frame[name]
        if col.dtype != object:  # the encoder's vocabularies hold strings: numbers become their decimal text
            col = col.astype(object).where(col.notna(), "").astype(str)
        elif col.isna().any():
            col = col.fillna("")
        cats[:, j] = col.to_numpy(dtype=object)
    label = None
    for name in LABEL_COLUMNS:
        if name in frame.columns:
            values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
            bad = ~np.isin(values, (0.0, 1.0))
            if bad.any():
                row = first_row + int(np.flatnonzero(bad)[0]) + 1
                raise DataError(f"data row {row}: {name} {frame[name].iloc[int(np.flatnonzero(bad)[0])]!r} is not 0 or 1",
                                source=source)  # fmt: skip
            label = values.astype(np.float32)
            break
    return RawCTR(dense_arr, cats, label, tuple(dense), tuple(sparse), source)


def iter_table(
    path: str | os.PathLike[str], fmt: str, dense: Sequence[str], sparse: Sequence[str], *, chunk_rows: int = 65_536
) -> Iterator[RawCTR]:
    """A CSV or Parquet table of feature columns, ``chunk_rows`` rows per block."""
    source = str(path)
    if not Path(path).is_file():
        raise DataError("no such file", source=source)
    wanted = set(dense) | set(sparse) | set(LABEL_COLUMNS)
    start = 0
    if fmt == "csv":
        sparse_types = {name: str for name in sparse}
        try:
            reader = pd.read_csv(path, chunksize=chunk_rows, dtype=sparse_types, keep_default_na=False,
                                 na_values={name: [""] for name in dense}, usecols=lambda c: c in wanted)  # fmt: skip
            for frame in reader:
                yield _table_block(frame, dense, sparse, source, start)
                start += len(frame)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"unreadable CSV ({exc})", source=source) from None
        return
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the parquet extra is installed in CI
        from turborec.errors import DependencyError

        raise DependencyError("pyarrow", "parquet") from None
    try:
        handle = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid for a non-parquet file
        raise DataError(f"not a Parquet file ({exc})", source=source) from None
    columns = [c for c in handle.schema_arrow.names if c in wanted]
    for batch in handle.iter_batches(batch_size=chunk_rows, columns=columns):
        frame = batch.to_pandas()
        yield _table_block(frame, dense, sparse, source, start)
        start += len(frame)


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
    if fmt not in STREAM_FORMATS:
        raise ConfigError(f"--format {fmt!r}: CTR rows are read from {', '.join(STREAM_FORMATS)}")
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if fmt == "criteo":
        yield from iter_criteo(path, chunk_rows=chunk_rows)
    elif fmt == "avazu":
        yield from iter_avazu(path, chunk_rows=chunk_rows)
    elif fmt == "libfm":
        for block in iter_libfm(path, chunk_rows=chunk_rows):
            yield fields.assign(block) if fields is not None else block
    else:
        yield from iter_table(path, fmt, dense, sparse, chunk_rows=chunk_rows)


__all__ = ["STREAM_FORMATS", "iter_ctr_file", "iter_table"]
