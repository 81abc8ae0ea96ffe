"""CTR loaders on the real samples and on malformed files."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest

from turborec.data.ctr import DuplicateRowsWarning, RawCTR, read_avazu, read_criteo, read_libfm
from turborec.errors import DataError


def test_criteo_10k_counts(criteo_10k: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DuplicateRowsWarning)  # the sample has no duplicates
        raw = read_criteo(criteo_10k)
    assert len(raw) == 10_000
    assert raw.label is not None and int(raw.label.sum()) == 2_182
    assert raw.dense.shape == (10_000, 13) and raw.categorical.shape == (10_000, 26)
    assert int(np.isnan(raw.dense).sum()) == 27_181
    assert int((raw.categorical == "").sum()) == 29_640
    assert [len(set(raw.categorical[:, j])) for j in range(3)] == [175, 386, 5_521]
    assert raw.dense[0, :3].tolist() == [1.0, 1.0, 5.0] and raw.categorical[0, 0] == "68fd1e64"


def test_criteo_unlabelled_rows_and_duplicate_warning(criteo_unlabelled: Path) -> None:
    with pytest.warns(DuplicateRowsWarning, match="1 duplicated row"):
        raw = read_criteo(criteo_unlabelled)
    assert len(raw) == 10_000 and raw.label is None
    assert int(np.isnan(raw.dense).sum()) == 26_157


def test_criteo_csv_variant_matches_tab_layout(criteo_csv: Path, criteo_10k: Path) -> None:
    csv_rows = read_criteo(criteo_csv)
    assert len(csv_rows) == 200 and csv_rows.label is not None and int(csv_rows.label.sum()) == 49
    assert csv_rows.dense[0, 2] == 260.0 and np.isnan(csv_rows.dense[0, 0])

    def keys(raw: RawCTR) -> set[tuple[object, ...]]:
        assert raw.label is not None
        dense = np.where(np.isnan(raw.dense), -9999, raw.dense).astype(np.int64)
        return {(lab, *d, *c) for lab, d, c in zip(raw.label.tolist(), dense.tolist(), raw.categorical.tolist())}

    # the README documents 19 rows shared by both files once floats are read as integers
    assert len(keys(csv_rows) & keys(read_criteo(criteo_10k))) == 19


def test_avazu_two_files(avazu_files: tuple[Path, Path]) -> None:
    train_path, test_path = avazu_files
    train = read_avazu(train_path)
    test = read_avazu(test_path, header=None)
    assert (len(train), len(test)) == (8_999, 1_000)
    assert train.label is not None and int(train.label.sum()) == 1_563
    assert test.label is not None and int(test.label.sum()) == 143
    inferred = read_avazu(test_path)  # header="infer" sees that the first line is data
    assert np.array_equal(inferred.categorical, test.categorical)
    both = RawCTR.concat([train, test])
    assert len(both) == 9_999 and both.label is not None and int(both.label.sum()) == 1_706
    assert both.dense.shape == (9_999, 0)
    col = {name: j for j, name in enumerate(both.sparse_names)}
    assert len(set(both.categorical[:, col["site_id"]])) == 381
    assert len(set(both.categorical[:, col["device_ip"]])) == 7_302
    # every row is hour 14102100: 2014-10-21, a Tuesday (weekday 1), hour 0
    assert set(both.categorical[:, col["hour_of_day"]]) == {"0"}
    assert set(both.categorical[:, col["weekday"]]) == {"1"}
    assert "id" not in col and "hour" not in col


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def _criteo_line(label: str = "0", dense: str = "1", cat: str = "ab") -> str:
    return "\t".join([label, *[dense] * 13, *[cat] * 26])


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (_criteo_line() + "\n" + _criteo_line() + "\tEXTRA\n", 2, "expected 40 tab-separated fields, got 41"),
        (_criteo_line() + "\n" + _criteo_line(dense="x7") + "\n", 2, "non-numeric value 'x7' in column I1"),
        (_criteo_line(label="2") + "\n", 1, "label '2'"),
        (_criteo_line(dense="inf") + "\n", 1, "infinite value"),
        ("\t".join(["1"] * 12) + "\n", 1, "expected 40 tab-separated fields"),
    ],
)
def test_criteo_malformed_rows_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = _write(tmp_path, "bad.txt.gz", text)
    with pytest.raises(DataError, match=message) as info:
        read_criteo(path)
    assert info.value.source == str(path) and info.value.line == line


def test_criteo_csv_wrong_field_count(tmp_path: Path) -> None:
    header = "label," + ",".join([f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)])
    row = ",".join(["1"] + ["2.0"] * 13 + ["c"] * 26)
    path = _write(tmp_path, "bad.csv", f"{header}\n{row}\n{row},x\n")
    with pytest.raises(DataError, match="expected 40 fields as in the header, got 41") as info:
        read_criteo(path)
    assert info.value.line == 3


def test_empty_files_are_data_errors(tmp_path: Path) -> None:
    empty = _write(tmp_path, "empty.txt", "")
    for reader in (read_criteo, read_avazu, read_libfm):
        with pytest.raises(DataError, match="empty file"):
            reader(empty)
    from turborec.data.ctr.loaders import AVAZU_COLUMNS

    with pytest.raises(DataError, match="no data rows"):
        read_avazu(_write(tmp_path, "header.csv", ",".join(AVAZU_COLUMNS) + "\n"))
    with pytest.raises(DataError, match=r"lacks Avazu columns \['C1'"):
        read_avazu(_write(tmp_path, "other.csv", "id,click,hour," + ",".join(["x"] * 21) + "\n"))
    with pytest.raises(DataError, match="no such file"):
        read_criteo(tmp_path / "missing.txt")


def test_avazu_bad_hour_and_width(tmp_path: Path) -> None:
    row = ["1", "0", "14102100", *["a"] * 21]
    bad_hour = ",".join(row).replace("14102100", "14133100")
    with pytest.raises(DataError, match="hour '14133100' is not YYMMDDHH") as info:
        read_avazu(_write(tmp_path, "a.csv", ",".join(row) + "\n" + bad_hour + "\n"), header=None)
    assert info.value.line == 2
    with pytest.raises(DataError, match="expected 24 fields, got 23"):
        read_avazu(_write(tmp_path, "b.csv", ",".join(row) + "\n" + ",".join(row[:-1]) + "\n"), header=None)


def test_libfm_one_hot_rows(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.libfm", "1 3:1 10:1 22:1\n-1 4:1 10:1 21:1\n0 3:1 11:1 22:1\n")
    raw = read_libfm(path)
    assert raw.label is not None and raw.label.tolist() == [1.0, 0.0, 0.0]
    assert raw.sparse_names == ("f0", "f1", "f2") and raw.categorical[1].tolist() == ["4", "10", "21"]
    with pytest.raises(DataError, match="only one-hot") as info:
        read_libfm(_write(tmp_path, "v.libfm", "1 3:1 4:1\n1 3:0.5 4:1\n"))
    assert info.value.line == 2
    with pytest.raises(DataError, match="expected 2 idx:val pairs"):
        read_libfm(_write(tmp_path, "w.libfm", "1 3:1 4:1\n1 3:1\n"))
    with pytest.raises(DataError, match="malformed pair"):
        read_libfm(_write(tmp_path, "m.libfm", "1 3:1 4\n"))


def test_duplicates_warn(tmp_path: Path) -> None:
    path = _write(tmp_path, "dup.txt", (_criteo_line() + "\n") * 3 + _criteo_line(label="1") + "\n")
    with pytest.warns(DuplicateRowsWarning, match="2 duplicated row"):
        raw = read_criteo(path)
    assert len(raw) == 4
