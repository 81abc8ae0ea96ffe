"""Tables on disk, chosen by file extension: CSV, Parquet or JSON Lines, read and written the same way.

``write_table`` refuses an extension it does not know (rather than writing CSV under a
``.parquet`` name) and replaces the target atomically; ``read_table`` reads a whole file
into a pandas DataFrame. pandas (and pyarrow for Parquet) are imported on first use.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from turborec._util.optional import has_module
from turborec.errors import ConfigError, DataError, DependencyError

if TYPE_CHECKING:
    import pandas as pd

# extension -> table format (a trailing .gz is allowed for the text formats)
TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
WRITABLE = (".parquet", ".csv", ".jsonl")


def table_format(path: str | os.PathLike[str]) -> str | None:
    """'csv', 'tsv', 'parquet' or 'jsonl' from the file name, None when the extension is none of them."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
        if suffixes and suffixes[-1] == ".parquet":
            return None
    return TABLE_FORMATS.get(suffixes[-1]) if suffixes else None


def check_writable(path: str | os.PathLike[str]) -> str:
    """The format ``path`` will be written in; a ConfigError naming the choices when there is none."""
    suffix = Path(path).suffix.lower()
    if suffix not in WRITABLE:
        raise ConfigError(f"{path}: cannot tell the output format from {suffix or 'no extension'!r}; "
                          f"name the file {', '.join('*' + s for s in WRITABLE)}")
    if suffix == ".parquet" and not has_module("pyarrow"):
        raise DependencyError("pyarrow", "parquet")
    return suffix[1:]


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` as Parquet, CSV or JSON Lines by ``path``'s extension; atomic replace."""
    fmt = check_writable(path)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        elif fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_table(path: str | os.PathLike[str], *, sep: str | None = None, fmt: str | None = None) -> pd.DataFrame:
    """A whole CSV / TSV / Parquet / JSON Lines file by extension (other names are read as CSV), or as ``fmt``."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise DataError("file not found" if not p.exists() else "not a regular file", source=str(p))
    if p.stat().st_size == 0:
        raise DataError("file is empty", source=str(p))
    fmt = fmt or table_format(p) or "csv"
    if fmt == "parquet" and not has_module("pyarrow"):
        raise DependencyError("pyarrow", "parquet")
    try:
        if fmt == "parquet":
            return pd.read_parquet(p)
        if fmt == "jsonl":
            return pd.read_json(p, lines=True, dtype=False)
        return pd.read_csv(p, sep=sep or ("\t" if fmt == "tsv" else ","), keep_default_na=False, na_values=[""])
    except Exception as exc:  # pandas / pyarrow raise many types for a file that is not what its name says
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read as {fmt}: {first}", source=str(p)) from None
