"""Rankers start from logistic regression (LR) and never end with a worse validation logloss than LR."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from turborec.data.ctr import CTRData, SyntheticCTRConfig, read_criteo, shuffle_split, synthetic_ctr
from turborec.models.rankers import LogisticRegression, build_ranker, warm_start_from_logreg
from turborec.train.ctr import CTRTrainConfig, evaluate_ranker, fit_ranker, predict_ranker
from turborec.train.ctr_recipe import ctr_recipe, train_ctr

WARM = [("fm", {}), ("deepfm", {}), ("dlrm", {"wide": True}), ("dcnv2", {"wide": True})]
SYNTH = SyntheticCTRConfig(n_rows=30_000, vocab_sizes=(10, 20, 30, 50), n_dense=2, interaction_std=0.6, seed=1)


@pytest.fixture(scope="module")
def criteo_splits(criteo_10k: Path) -> tuple[CTRData, CTRData, LogisticRegression]:
    """The real Criteo sample's 8:1 train / validation parts and an LR fitted on them."""
    raw = read_criteo(criteo_10k, nrows=5000)
    train_raw, valid_raw, _ = shuffle_split(raw, (0.8, 0.1, 0.1), seed=0)
    encoder = ctr_recipe("logreg", "criteo").encoder.build().fit(train_raw)
    train, valid = encoder.transform(train_raw), encoder.transform(valid_raw)
    torch.manual_seed(0)
    lr = LogisticRegression(cardinalities=train.cardinalities, n_dense=train.n_dense)
    fit_ranker(lr, train, valid, CTRTrainConfig(epochs=4, batch_size=128, lr=3e-3, progress=False))
    return train, valid, lr


@pytest.mark.parametrize(("kind", "net"), WARM)
def test_warm_start_reproduces_the_logreg_logits(
    kind: str, net: dict[str, bool], criteo_splits: tuple[CTRData, CTRData, LogisticRegression]
) -> None:
    train, valid, lr = criteo_splits
    torch.manual_seed(0)
    model = build_ranker(kind, net, cardinalities=train.cardinalities, n_dense=train.n_dense)
    cold = predict_ranker(model, valid)
    warm_start_from_logreg(model, lr)
    want = predict_ranker(lr, valid)
    np.testing.assert_allclose(predict_ranker(model, valid), want, atol=1e-6)
    assert np.abs(cold - want).max() > 1e-2  # the copy, not the random initialisation, made them equal


@pytest.mark.parametrize("kind", ["fm", "dlrm", "dcnv2", "deepfm"])
def test_recipe_rankers_end_at_or_below_the_logreg_validation_logloss(criteo_10k: Path, kind: str) -> None:
    raw = read_criteo(criteo_10k, nrows=4000)
    run = train_ctr(raw, ctr_recipe(kind, "criteo", {"epochs": "3"}, seed=1))
    assert run.metrics["warm_started"]
    assert run.fit.history[0]["step"] == 0  # the LR-equivalent start was validated
    assert run.metrics["valid_logloss"] <= run.metrics["logreg_valid_logloss"]
    assert run.metrics["valid_logloss_below_logreg"] is True
    assert run.recipe.train.logloss_cap_at_start  # what the artifact records is what the fit ran with


def test_training_that_only_hurts_restores_the_logreg_start(
    criteo_splits: tuple[CTRData, CTRData, LogisticRegression],
) -> None:
    train, valid, lr = criteo_splits
    torch.manual_seed(0)
    model = build_ranker("deepfm", {"embedding_dim": 8}, cardinalities=train.cardinalities, n_dense=train.n_dense)
    warm_start_from_logreg(model, lr)
    # a huge learning rate wrecks every checkpoint after the start
    cfg = CTRTrainConfig(epochs=2, batch_size=256, lr=1.0, eval_every=4, progress=False, logloss_cap_at_start=True)
    fit = fit_ranker(model, train, valid, cfg)
    assert fit.best_step == 0 and fit.steps > 0
    assert all(h["valid_logloss_calibrated"] > fit.history[0]["valid_logloss"] for h in fit.history[1:])
    np.testing.assert_allclose(predict_ranker(model, valid), predict_ranker(lr, valid), atol=1e-6)
    unguarded = build_ranker("deepfm", {"embedding_dim": 8}, cardinalities=train.cardinalities, n_dense=train.n_dense)
    warm_start_from_logreg(unguarded, lr)
    fit_ranker(unguarded, train, valid, replace(cfg, logloss_cap_at_start=False))
    assert evaluate_ranker(unguarded, valid)["logloss"] > evaluate_ranker(lr, valid)["logloss"]


def test_a_ranker_that_beats_logreg_is_kept() -> None:
    train, valid, test = shuffle_split(synthetic_ctr(SYNTH).data, seed=0)
    assert isinstance(train, CTRData) and isinstance(valid, CTRData) and isinstance(test, CTRData)
    torch.manual_seed(0)
    lr = LogisticRegression(cardinalities=train.cardinalities, n_dense=2)
    fit_ranker(lr, train, valid, CTRTrainConfig(epochs=4, batch_size=512, lr=2e-2, patience=1, progress=False))
    fm = build_ranker("fm", {"embedding_dim": 8}, cardinalities=train.cardinalities, n_dense=2)
    warm_start_from_logreg(fm, lr)
    cfg = CTRTrainConfig(epochs=10, batch_size=512, lr=1e-2, patience=1, progress=False, logloss_cap_at_start=True)
    fit = fit_ranker(fm, train, valid, cfg)
    assert fit.best_step > 0
    fm_valid, lr_valid = evaluate_ranker(fm, valid), evaluate_ranker(lr, valid)
    assert fm_valid["logloss"] < lr_valid["logloss"] - 0.01
    assert evaluate_ranker(fm, test)["auc"] > evaluate_ranker(lr, test)["auc"] + 0.04
