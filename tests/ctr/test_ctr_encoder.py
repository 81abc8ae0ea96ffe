"""CTREncoder: vocabularies with min-frequency and OOV row, hashing, dense transform, JSON, splits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from turborec.data.ctr import CTRData, CTREncoder, RawCTR, read_criteo, shuffle_split
from turborec.errors import ConfigError, DataError, NotFittedError


def _raw(cats: list[list[str]], dense: list[list[float]] | None = None, label: list[float] | None = None) -> RawCTR:
    arr = np.empty((len(cats), len(cats[0])), dtype=object)
    arr[:] = cats
    d = np.asarray(dense if dense is not None else [[1.0]] * len(cats), dtype=np.float64)
    lab = np.asarray(label if label is not None else [0.0] * len(cats), dtype=np.float32)
    names = tuple(f"c{j}" for j in range(arr.shape[1]))
    return RawCTR(d, arr, lab, tuple(f"d{j}" for j in range(d.shape[1])), names)


def test_min_freq_vocabulary_and_oov_row() -> None:
    raw = _raw([["a", "x"], ["a", "y"], ["b", "x"], ["a", ""], ["c", ""], ["b", "x"]])
    enc = CTREncoder(min_freq=2).fit(raw)
    # c0: a(3), b(2) kept, c(1) rare; c1: x(3), ""(2) kept, y(1) rare; +1 for the OOV row
    assert enc.cardinalities == (3, 3)
    data = enc.transform(raw)
    assert data.sparse[:, 0].tolist() == [1, 1, 2, 1, 0, 2]  # most frequent first, rare -> 0
    assert data.sparse[:, 1].tolist() == [1, 0, 1, 2, 2, 1]
    unseen = enc.transform(_raw([["never", "seen"], ["b", "x"]]))
    assert unseen.sparse.tolist() == [[0, 0], [2, 1]]


def test_dense_log_transform_clips_negatives_and_missing() -> None:
    raw = _raw([["a"]] * 4, dense=[[0.0], [np.e - 1], [-3.0], [np.nan]])
    log = CTREncoder().fit_transform(raw).dense[:, 0]
    np.testing.assert_allclose(log, [0.0, 1.0, 0.0, 0.0], atol=1e-6)
    ident = CTREncoder(dense_transform="identity").fit_transform(raw).dense[:, 0]
    np.testing.assert_allclose(ident, [0.0, np.e - 1, -3.0, 0.0], atol=1e-6)
    assert log.dtype == np.float32


def test_standardize_uses_fitting_rows_statistics() -> None:
    fit_rows = _raw([["a"]] * 4, dense=[[0.0, 5.0], [1.0, 5.0], [3.0, 5.0], [np.nan, 5.0]])
    enc = CTREncoder(standardize=True).fit(fit_rows)
    fitted = enc.transform(fit_rows).dense
    np.testing.assert_allclose(fitted.mean(axis=0), [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(fitted[:, 0].std(), 1.0, atol=1e-5)  # constant column: 0, not NaN
    other = _raw([["b"]], dense=[[7.0, 100.0]])
    again = CTREncoder.from_json(json.loads(json.dumps(enc.to_json())))
    assert np.array_equal(again.transform(other).dense, enc.transform(other).dense)
    log = np.log1p([0.0, 1.0, 3.0, 0.0])
    assert enc.transform(other).dense[0, 0] == pytest.approx((np.log1p(7.0) - log.mean()) / log.std(), rel=1e-5)


def test_json_round_trip_gives_identical_encoding(criteo_10k: Path) -> None:
    raw = read_criteo(criteo_10k)
    train, _, test = shuffle_split(raw, seed=3)
    enc = CTREncoder(min_freq=3, hash_buckets={"C3": 1000}).fit(train)
    again = CTREncoder.from_json(json.loads(json.dumps(enc.to_json())))
    a, b = enc.transform(test), again.transform(test)
    assert np.array_equal(a.sparse, b.sparse) and np.array_equal(a.dense, b.dense)
    assert again.cardinalities == enc.cardinalities and enc.cardinalities[2] == 1001
    # fitting on the training split only: test rows hold categories the vocabulary never saw
    assert (a.sparse == 0).any()


def test_hashing_is_stable_across_processes() -> None:
    raw = _raw([["alpha", "1"], ["beta", "2"], ["gamma", "3"], ["alpha", "4"]])
    codes = CTREncoder(hash_buckets=7).fit_transform(raw).sparse
    assert codes.min() >= 1 and codes.max() <= 7 and codes[0, 0] == codes[3, 0]
    script = (
        "import numpy as np; from turborec.data.ctr import CTREncoder, RawCTR;"
        "c=np.empty((4,2),dtype=object); c[:]=[['alpha','1'],['beta','2'],['gamma','3'],['alpha','4']];"
        "r=RawCTR(np.ones((4,1)),c,None,('d0',),('c0','c1'));"
        "print(CTREncoder(hash_buckets=7).fit_transform(r).sparse.tolist())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == codes.tolist()


def test_encoder_errors() -> None:
    raw = _raw([["a", "b"]])
    with pytest.raises(NotFittedError):
        CTREncoder().transform(raw)
    with pytest.raises(ConfigError, match="min_freq"):
        CTREncoder(min_freq=0)
    with pytest.raises(ConfigError, match="dense_transform"):
        CTREncoder(dense_transform="sqrt")
    with pytest.raises(ConfigError, match="unknown sparse features"):
        CTREncoder(hash_buckets={"nope": 10}).fit(raw)
    enc = CTREncoder().fit(raw)
    other = RawCTR(raw.dense, raw.categorical, raw.label, raw.dense_names, ("c0", "zz"))
    with pytest.raises(DataError, match=r"categorical columns \['c1'\]"):
        enc.transform(other)
    with pytest.raises(DataError, match="malformed CTR encoder JSON"):
        CTREncoder.from_json({**enc.to_json(), "vocabs": None})
    with pytest.raises(DataError, match="unknown CTR encoder format"):
        CTREncoder.from_json({**enc.to_json(), "format": 99})


def test_ctr_data_validates_index_ranges() -> None:
    dense = np.zeros((2, 1), dtype=np.float32)
    with pytest.raises(DataError, match=r"index range \[0, 5\] outside its vocabulary of 5"):
        CTRData(dense, np.array([[0], [5]], dtype=np.int64), None, (5,))
    with pytest.raises(DataError, match="int64"):
        CTRData(dense, np.array([[0], [1]], dtype=np.int32), None, (5,))


def test_shuffle_split_partitions_rows() -> None:
    raw = _raw([[str(i)] for i in range(101)], dense=[[float(i)] for i in range(101)])
    parts = shuffle_split(raw, (0.8, 0.1, 0.1), seed=1)
    assert [len(p) for p in parts] == [80, 10, 11]
    ids = np.concatenate([p.dense[:, 0] for p in parts])
    assert sorted(ids.tolist()) == list(range(101))
    again = shuffle_split(raw, (0.8, 0.1, 0.1), seed=1)
    assert np.array_equal(again[1].dense, parts[1].dense)
    assert not np.array_equal(shuffle_split(raw, (0.8, 0.1, 0.1), seed=2)[1].dense, parts[1].dense)
    with pytest.raises(ConfigError):
        shuffle_split(raw, (0.8, 0.3))
