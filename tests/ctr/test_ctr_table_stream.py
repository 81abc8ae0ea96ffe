"""CSV / Parquet tables of CTR rows: the Arrow reading and encoding path of `turborec predict` gives the
same indices and scores as encoding the same rows value by value, for every column type a table can
hold, unseen categories (OOV row) and hashed features included; errors stay one readable line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from turborec.data.ctr import CTREncoder, RawCTR, read_criteo
from turborec.data.ctr import stream as ctr_stream
from turborec.data.ctr.stream import iter_arrow_table, iter_table
from turborec.errors import DataError
from turborec.models.rankers import build_ranker
from turborec.train import ctr_predict
from turborec.train.ctr import LoadedRanker, load_ranker, save_ranker
from turborec.train.ctr_predict import predict_file

pytest.importorskip("pyarrow")

DENSE = ("d0", "d1")
SPARSE = ("s_text", "s_int", "s_float", "s_hashed")


def _table(n: int, seed: int) -> pd.DataFrame:
    """Columns of the types users' tables hold: floats with gaps, ints, text with gaps, ints and floats
    as categories; value ranges wider than the fitting rows', so some categories are unseen."""
    rng = np.random.default_rng(seed)
    text = rng.choice(["red", "green", "blue", "NA", "null", "é", ""], size=n).astype(object)
    text[rng.random(n) < 0.1] = None
    return pd.DataFrame({
        "d0": np.where(rng.random(n) < 0.2, np.nan, rng.exponential(5.0, n)),
        "d1": rng.integers(-3, 100, n),
        "s_text": text,
        "s_int": rng.integers(0, 40 + 20 * seed, n),
        "s_float": rng.integers(0, 8, n) / 2.0,
        "s_hashed": rng.integers(0, 10_000, n).astype(str),
        "label": rng.integers(0, 2, n),
        "unused": "x",
    })  # fmt: skip


def _raw(frame: pd.DataFrame) -> RawCTR:
    """The documented reading of a table, value by value: text as written ("" when missing, numbers as
    pandas' str() writes them), dense as float64 with NaN."""
    cats = np.empty((len(frame), len(SPARSE)), dtype=object)
    for j, name in enumerate(SPARSE):
        col = frame[name]
        cats[:, j] = ["" if pd.isna(v) else str(v) for v in col.astype(object)]
    dense = frame[list(DENSE)].to_numpy(dtype=np.float64)
    return RawCTR(dense, cats, frame["label"].to_numpy(np.float32), DENSE, SPARSE, "frame")


@pytest.fixture(scope="module")
def ranker(tmp_path_factory: pytest.TempPathFactory) -> LoadedRanker:
    fit = _raw(_table(2000, seed=0))
    encoder = CTREncoder(hash_buckets={"s_hashed": 64}).fit(fit)
    torch.manual_seed(0)
    model = build_ranker("dcnv2", {"embedding_dim": 4, "n_cross": 1, "deep": [16]},
                         cardinalities=list(encoder.cardinalities), n_dense=len(DENSE))  # fmt: skip
    path = save_ranker(tmp_path_factory.mktemp("ranker") / "dcn", model, encoder=encoder)
    return load_ranker(path)


def _blockwise(ranker: LoadedRanker, raw: RawCTR, rows: int) -> np.ndarray:
    """The model's scores for ``raw`` scored ``rows`` at a time, as predict does: a net's float32 result
    for a row may differ in the last bit with the batch it is in, so bit-for-bit checks use the same blocks."""
    return np.concatenate(
        [ranker.predict(raw.take(np.arange(i, min(i + rows, len(raw))))) for i in range(0, len(raw), rows)]
    )


def _write(frame: pd.DataFrame, folder: Path, fmt: str) -> Path:
    path = folder / f"rows.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def test_arrow_encoding_equals_value_by_value_encoding_with_oov_and_hashing(
    ranker: LoadedRanker, tmp_path: Path
) -> None:
    encoder = ranker.encoder
    assert encoder is not None
    frame = _table(3000, seed=1)
    want = encoder.transform(_raw(frame))
    unseen = ~np.isin(frame["s_int"].astype(str), encoder.vocabs["s_int"].ids)
    assert unseen.any() and (want.sparse[unseen, 1] == 0).all()  # unseen categories: the OOV row
    for fmt in ("parquet", "csv"):
        path = _write(frame, tmp_path, fmt)
        tables = list(iter_arrow_table(path, fmt, DENSE, SPARSE, chunk_rows=1000, labels=False))
        assert [t.num_rows for t in tables] == [1000, 1000, 1000] and tables[0].column_names == [*DENSE, *SPARSE]
        got = [encoder.transform_arrow(t) for t in tables]
        np.testing.assert_array_equal(np.concatenate([g.sparse for g in got]), want.sparse, err_msg=fmt)
        np.testing.assert_array_equal(np.concatenate([g.dense for g in got]), want.dense, err_msg=fmt)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("out_suffix", [".parquet", ".csv"])
def test_predict_writes_the_models_scores_for_a_table(
    ranker: LoadedRanker, tmp_path: Path, fmt: str, out_suffix: str
) -> None:
    frame = _table(2500, seed=2)
    frame.loc[7, "label"] = 5  # labels are ignored by predict, even bad ones
    raw = _raw(frame.assign(label=0))
    want = _blockwise(ranker, raw, 700)
    chunks: list[int] = []
    out = tmp_path / f"scores{out_suffix}"
    rows = predict_file(ranker, _write(frame, tmp_path, fmt), fmt, out, chunk_rows=700, on_chunk=chunks.append)
    assert rows == 2500 and chunks == [700, 700, 700, 400]
    got = pd.read_parquet(out) if out_suffix == ".parquet" else pd.read_csv(out)
    assert list(got.columns) == ["probability"]
    if out_suffix == ".parquet":
        np.testing.assert_array_equal(got["probability"].to_numpy(), want)  # float32 as scored, bit for bit
    else:
        np.testing.assert_allclose(got["probability"].to_numpy(), want, rtol=1e-6)  # 7 significant digits
    np.testing.assert_allclose(got["probability"].to_numpy(), ranker.predict(raw), rtol=1e-5, atol=1e-6)


def test_pandas_csv_reader_reads_the_same_rows(
    ranker: LoadedRanker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the reader for installs without pyarrow (and .zip / .xz files): same values, same scores
    path = _write(_table(1500, seed=3), tmp_path, "csv")
    arrow = RawCTR.concat(list(iter_table(path, "csv", DENSE, SPARSE, chunk_rows=600)))
    predict_file(ranker, path, "csv", tmp_path / "arrow.parquet")
    monkeypatch.setattr(ctr_stream, "arrow_reads", lambda *_: False)
    monkeypatch.setattr(ctr_predict, "arrow_reads", lambda *_: False)
    plain = RawCTR.concat(list(iter_table(path, "csv", DENSE, SPARSE, chunk_rows=600)))
    assert arrow.categorical.tolist() == plain.categorical.tolist()
    np.testing.assert_array_equal(arrow.dense, plain.dense)
    assert arrow.label is not None and plain.label is not None
    np.testing.assert_array_equal(arrow.label, plain.label)
    predict_file(ranker, path, "csv", tmp_path / "plain.parquet")
    np.testing.assert_array_equal(
        pd.read_parquet(tmp_path / "arrow.parquet"), pd.read_parquet(tmp_path / "plain.parquet")
    )


def test_real_criteo_rows_through_a_table(criteo_10k: Path, tmp_path: Path) -> None:
    # real rows with many missing values; the table path must score them as the criteo reader's rows
    rows = read_criteo(criteo_10k, nrows=4000)
    encoder = CTREncoder(min_freq=2).fit(rows.take(np.arange(2000)))
    torch.manual_seed(1)
    model = build_ranker("dcnv2", {"embedding_dim": 4, "n_cross": 1, "deep": [16]},
                         cardinalities=list(encoder.cardinalities), n_dense=rows.dense.shape[1])  # fmt: skip
    ranker = load_ranker(save_ranker(tmp_path / "dcn", model, encoder=encoder))
    want = _blockwise(ranker, rows, 1500)
    frame = pd.DataFrame(rows.dense, columns=list(rows.dense_names))
    for j, name in enumerate(rows.sparse_names):
        frame[name] = rows.categorical[:, j]
    for fmt in ("parquet", "csv"):
        out = tmp_path / f"{fmt}.parquet"
        assert predict_file(ranker, _write(frame, tmp_path, fmt), fmt, out, chunk_rows=1500) == 4000
        np.testing.assert_array_equal(pd.read_parquet(out)["probability"].to_numpy(), want, err_msg=fmt)


def test_table_errors_are_one_line(ranker: LoadedRanker, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("other,d0,d1,s_text,s_int,s_float,s_hashed\nz,1,2,a,1,1.0,x\nz,1,seven,a,1,1.0,x\n")
    with pytest.raises(DataError, match=r"dense column 'd1' holds non-numeric value 'seven' \(line 3\)"):
        predict_file(ranker, bad, "csv", tmp_path / "s.parquet")
    assert not list(tmp_path.glob("*.parquet")) and not list(tmp_path.glob(".s.parquet*"))  # nothing half-written
    frame = _table(10, seed=4)
    with pytest.raises(DataError, match=r"columns \['s_float'\] that the model was trained on are missing"):
        predict_file(ranker, _write(frame.drop(columns="s_float"), tmp_path, "parquet"), "parquet", tmp_path / "s.csv")
    frame.loc[3, "label"] = 2
    for fmt in ("parquet", "csv"):  # evaluation reads labels: a bad one names its row
        with pytest.raises(DataError, match="data row 4: label '2' is not 0 or 1"):
            list(iter_table(_write(frame, tmp_path, fmt), fmt, DENSE, SPARSE))
    text_dense = _table(10, seed=4).astype({"d1": str})
    text_dense.loc[2, "d1"] = "lots"
    with pytest.raises(DataError, match="dense column 'd1' holds non-numeric values"):
        list(iter_table(_write(text_dense, tmp_path, "parquet"), "parquet", DENSE, SPARSE))
