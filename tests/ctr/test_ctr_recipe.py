"""The CTR training recipe (seeding, warm start, calibration), FM, and libfm field checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from turborec.data.ctr import (
    CTRData,
    LibfmFields,
    RawCTR,
    SyntheticCTRConfig,
    read_criteo,
    read_libfm,
    shuffle_split,
    synthetic_ctr,
)
from turborec.errors import ConfigError, DataError
from turborec.models.rankers import FactorizationMachine, LogisticRegression, build_ranker
from turborec.train.ctr import (
    CTRTrainConfig,
    calibrate_ranker,
    evaluate_ranker,
    fit_ranker,
    load_ranker,
    predict_ranker,
)
from turborec.train.ctr_recipe import ctr_recipe, save_ctr_run, train_ctr

SYNTH = SyntheticCTRConfig(n_rows=30_000, vocab_sizes=(10, 20, 30, 50), n_dense=2, interaction_std=0.6, seed=1)


def test_same_seed_same_weights_and_auc(criteo_10k: Path) -> None:
    raw = read_criteo(criteo_10k, nrows=3000)
    recipe = ctr_recipe("dcnv2", "criteo", {"epochs": "2", "eval_every": "4"}, seed=7)
    runs = [train_ctr(raw, recipe) for _ in range(2)]
    a, b = (r.model.state_dict() for r in runs)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].metrics["auc"] == runs[1].metrics["auc"]
    assert runs[0].metrics["warm_started"]  # DCN-V2 starts from the seed's logistic regression, as the benchmark
    other = train_ctr(raw, ctr_recipe("dcnv2", "criteo", {"epochs": "2", "eval_every": "4"}, seed=8))
    assert other.metrics["auc"] != runs[0].metrics["auc"]


def test_recipe_options_reach_the_encoder_and_are_saved(tmp_path: Path, criteo_10k: Path) -> None:
    raw = read_criteo(criteo_10k, nrows=2000)
    run = train_ctr(raw, ctr_recipe("logreg", "criteo", {"min_freq": "3", "epochs": "1", "hash_buckets": "1000"}))
    assert run.encoder.min_freq == 3 and set(run.encoder.buckets.values()) == {1000}
    loaded = load_ranker(save_ctr_run(tmp_path / "m", run))
    assert loaded.split == {"seed": 0, "ratios": [0.8, 0.1, 0.1], "rows": 2000, "source": str(criteo_10k)}
    assert loaded.train_rows is not None and len(loaded.train_rows) == 1600
    with pytest.raises(ConfigError, match="min_freq must be >= 1, got 0"):
        ctr_recipe("fm", "criteo", {"min_freq": "0"})
    with pytest.raises(ConfigError, match="unknown ranker 'xgboost'"):
        ctr_recipe("xgboost")


@pytest.fixture(scope="module")
def synth_splits() -> tuple[CTRData, CTRData, CTRData]:
    return shuffle_split(synthetic_ctr(SYNTH).data, seed=0)  # type: ignore[return-value]


def test_fm_learns_the_pairwise_interactions_logreg_cannot(synth_splits: tuple[CTRData, CTRData, CTRData]) -> None:
    train, valid, test = synth_splits
    torch.manual_seed(0)
    fm = build_ranker("fm", {"embedding_dim": 8}, cardinalities=train.cardinalities, n_dense=2)
    assert isinstance(fm, FactorizationMachine)
    fit_ranker(fm, train, valid, CTRTrainConfig(epochs=10, batch_size=512, lr=1e-2, patience=1, progress=False))
    lr = LogisticRegression(cardinalities=train.cardinalities, n_dense=2)
    fit_ranker(lr, train, valid, CTRTrainConfig(epochs=4, batch_size=512, lr=2e-2, patience=1, progress=False))
    assert evaluate_ranker(fm, test)["auc"] > evaluate_ranker(lr, test)["auc"] + 0.04


def test_calibration_lowers_logloss_and_keeps_the_ranking(synth_splits: tuple[CTRData, CTRData, CTRData]) -> None:
    train, valid, _ = synth_splits
    torch.manual_seed(0)
    fm = build_ranker("fm", {"embedding_dim": 8}, cardinalities=train.cardinalities, n_dense=2)
    fit_ranker(fm, train, None, CTRTrainConfig(epochs=2, batch_size=512, lr=1e-2, progress=False))
    with torch.no_grad():  # make it over-confident
        fm.calibration.copy_(torch.tensor([3.0, 0.0]))
    before = evaluate_ranker(fm, valid)
    scale, _ = calibrate_ranker(fm, valid)
    after = evaluate_ranker(fm, valid)
    assert scale > 0 and after["logloss"] < before["logloss"] - 0.01
    assert after["auc"] == pytest.approx(before["auc"], abs=1e-6)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_libfm_labels_other_than_click_or_not_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"x.libfm:2: label '0.5' is not a click label"):
        read_libfm(_write(tmp_path, "x.libfm", "1 3:1 10:1\n0.5 4:1 11:1\n"))
    raw = read_libfm(_write(tmp_path, "y.libfm", "1 3:1 10:1\n-1 4:1 11:1\n0 3:1 11:1\n+1 4:1 10:1\n"))
    assert raw.label is not None and raw.label.tolist() == [1.0, 0.0, 0.0, 1.0]


def test_libfm_positions_must_hold_one_field_each(tmp_path: Path) -> None:
    # position 2 of line 2 holds an id of position 1's range: the file does not name fields by position
    path = _write(tmp_path, "p.libfm", "1 3:1 10:1\n0 4:1 5:1\n0 5:1 11:1\n")
    with pytest.raises(DataError, match=r"pair positions 1 and 2 hold overlapping feature ids.*--fields"):
        read_libfm(path)
    fields = LibfmFields.from_mapping({"user": [0, 7], "item": [8, 20]})
    with pytest.raises(DataError, match="data row 2 does not hold exactly one id of every mapped field"):
        read_libfm(path, fields=fields)
    # with a field map, ids are assigned by range whatever their position
    raw = read_libfm(_write(tmp_path, "q.libfm", "1 3:1 10:1\n0 11:1 4:1\n"), fields=fields)
    assert raw.sparse_names == ("user", "item")
    assert raw.categorical.tolist() == [["3", "10"], ["4", "11"]]
    with pytest.raises(DataError, match="ranges of fields 'a' and 'b' overlap"):
        LibfmFields.from_mapping({"a": [0, 5], "b": [5, 9]})


def test_training_refuses_unlabelled_rows() -> None:
    raw = RawCTR(np.zeros((3, 0)), np.array([["a"], ["b"], ["c"]], dtype=object), None, (), ("c",))
    with pytest.raises(DataError, match="labelled rows"):
        train_ctr(raw, ctr_recipe("logreg"))


def test_dim_names_the_embedding_width_and_embedding_dim_is_a_deprecated_alias() -> None:
    assert ctr_recipe("dcnv2", "criteo", {"dim": "24"}).net["embedding_dim"] == 24
    with pytest.warns(FutureWarning, match="embedding_dim is deprecated; use dim"):
        assert ctr_recipe("dcnv2", "criteo", {"embedding_dim": "12"}).net["embedding_dim"] == 12
    with pytest.raises(ConfigError, match="dim='abc'"):
        ctr_recipe("fm", "criteo", {"dim": "abc"})
    with pytest.raises(ConfigError, match=r"known: .*\bdim\b") as info:
        ctr_recipe("dcnv2", "criteo", {"width": "8"})
    assert "embedding_dim" not in str(info.value)


def test_an_artifact_of_the_old_full_rank_synthetic_dcnv2_still_loads(tmp_path: Path) -> None:
    """The synthetic preset's DCN-V2 became low-rank; artifacts record their net config, so one trained with the
    old default (three full-rank cross layers) rebuilds as it was trained, not as the preset now says."""
    raw = synthetic_ctr(SyntheticCTRConfig(n_rows=3000, vocab_sizes=(10, 20, 30), n_dense=2, seed=2)).raw("s")
    old = {"low_rank": "0", "n_cross": "3", "epochs": "1", "calibrate": "false"}
    run = train_ctr(raw, ctr_recipe("dcnv2", "synthetic", old))
    loaded = load_ranker(save_ctr_run(tmp_path / "old", run))
    assert ctr_recipe("dcnv2", "synthetic").net["low_rank"] > 0  # what a new fit gets
    assert loaded.model.config == run.model.config and loaded.model.config.low_rank == 0  # type: ignore[attr-defined]
    assert len(loaded.model.cross) == 3  # type: ignore[arg-type]
    np.testing.assert_array_equal(loaded.predict(raw), predict_ranker(run.model, run.encoder.transform(raw)))
