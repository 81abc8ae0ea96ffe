"""Scoring a file of CTR rows with a saved ranker, block by block (memory bounded by one block).

The rows are read ``chunk_rows`` at a time (:func:`turborec.data.ctr.stream.iter_ctr_file`),
encoded with the artifact's encoder, scored, and appended to the output: Parquet (one row group
per block) or CSV, one ``probability`` per input row in input order. The output is written to a
temporary sibling and renamed into place, so a failed run leaves no half-written file.

A csv / parquet table read by pyarrow stays in Arrow until it is encoded
(:func:`~turborec.data.ctr.stream.iter_arrow_table`, ``CTREncoder.transform_arrow``): only the
model's columns are read, labels are skipped, and no value becomes a Python object, which is what
keeps scoring close to the net's own speed (benchmarks/predict.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from turborec.data.ctr import CTRData, LibfmFields, RawCTR
from turborec.data.ctr.stream import arrow_reads, check_stream_format, iter_arrow_table, iter_ctr_file
from turborec.errors import ConfigError
from turborec.train.ctr import LoadedRanker

OUTPUT_SUFFIXES = (".parquet", ".csv")
COLUMN = "probability"


def _feature_names(ranker: LoadedRanker) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if ranker.encoder is None:
        raise ConfigError(f"{ranker.path}: the artifact has no encoder, so raw rows cannot be scored")
    return ranker.encoder.dense_names, ranker.encoder.sparse_names


def read_table(ranker: LoadedRanker, path: str | os.PathLike[str], fmt: str) -> RawCTR:
    """All rows of a csv / parquet table with ``ranker``'s feature columns (for evaluation)."""
    dense, sparse = _feature_names(ranker)
    blocks = list(iter_ctr_file(path, fmt, dense=dense, sparse=sparse, chunk_rows=1 << 20))
    return blocks[0] if len(blocks) == 1 else RawCTR.concat(blocks)


class _Writer:
    def __init__(self, path: Path) -> None:
        if path.suffix not in OUTPUT_SUFFIXES:
            raise ConfigError(f"--out {path}: write scores to a .parquet or .csv file")
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self._parquet = None
        self._csv = None
        if path.suffix == ".parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:  # pragma: no cover - the parquet extra is installed in CI
                from turborec.errors import DependencyError

                raise DependencyError("pyarrow", "parquet") from None
            self._pa = pa
            # probabilities are all distinct: a dictionary page would only cost time
            self._parquet = pq.ParquetWriter(str(self.tmp), pa.schema([(COLUMN, pa.float32())]), use_dictionary=False)
        else:
            self._csv = open(self.tmp, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed in close()
            self._csv.write(COLUMN + "\n")

    def write(self, probs: np.ndarray) -> None:
        if not len(probs):
            return
        if self._parquet is not None:
            self._parquet.write_table(self._pa.table({COLUMN: probs.astype(np.float32)}))
        else:
            assert self._csv is not None
            self._csv.write("\n".join(map("{:.7g}".format, probs.tolist())) + "\n")  # as savetxt's %.7g, 6x faster

    def close(self, ok: bool) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._csv is not None:
            self._csv.close()
        if ok:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def predict_file(
    ranker: LoadedRanker,
    path: str | os.PathLike[str],
    fmt: str,
    out: str | os.PathLike[str],
    *,
    chunk_rows: int = 65_536,
    fields: LibfmFields | None = None,
    batch_size: int = 8192,
    on_chunk: Callable[[int], None] | None = None,
) -> int:
    """Write one click probability per row of ``path`` to ``out``; returns the number of rows."""
    _feature_names(ranker)  # an artifact without an encoder is refused before the output is opened
    check_stream_format(fmt, chunk_rows)
    writer = _Writer(Path(out))
    rows, ok = 0, False
    try:
        for block in _encoded_blocks(ranker, path, fmt, chunk_rows, fields):
            probs = ranker.predict(block, batch_size=batch_size)
            writer.write(probs)
            rows += len(probs)
            if on_chunk is not None:
                on_chunk(len(probs))
        ok = True
    finally:
        writer.close(ok)
    return rows


def _encoded_blocks(
    ranker: LoadedRanker, path: str | os.PathLike[str], fmt: str, chunk_rows: int, fields: LibfmFields | None
) -> Iterator[CTRData]:
    encoder = ranker.encoder
    assert encoder is not None
    if arrow_reads(path, fmt):
        source = str(path)
        for table in iter_arrow_table(path, fmt, encoder.dense_names, encoder.sparse_names, chunk_rows=chunk_rows,
                                      labels=False):  # fmt: skip
            yield encoder.transform_arrow(table, source)
        return
    for block in iter_ctr_file(path, fmt, dense=encoder.dense_names, sparse=encoder.sparse_names,
                               chunk_rows=chunk_rows, fields=fields):  # fmt: skip
        yield encoder.transform(block)


__all__ = ["OUTPUT_SUFFIXES", "predict_file", "read_table"]
