"""AUC / log loss / calibration against hand-computed values and brute-force pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turborec.errors import DataError
from turborec.metrics.ctr import auc, calibration, ctr_metrics, logloss, normalized_entropy


def brute_force_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins) / (len(pos) * len(neg))


def test_auc_hand_cases() -> None:
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert auc(np.array([0, 1]), np.array([0.2, 0.9])) == 1.0
    assert auc(np.array([1, 0]), np.array([0.2, 0.9])) == 0.0
    assert auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    # a tie between a positive and a negative counts one half: (0.5 + 1 + 2) / 4
    assert auc(np.array([0, 1, 0, 1]), np.array([0.2, 0.2, 0.1, 0.3])) == 0.875


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), min_size=2, max_size=60).filter(
        lambda rows: len({r[0] for r in rows}) == 2
    )
)
def test_auc_equals_brute_force_pairs_with_many_ties(rows: list[tuple[int, int]]) -> None:
    labels = np.array([r[0] for r in rows])
    scores = np.array([r[1] for r in rows], dtype=np.float64) / 3.0
    assert auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores), abs=1e-12)


def test_auc_large_random_matches_brute_force_and_is_rank_invariant() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(3000) < 0.2).astype(np.float32)
    scores = np.round(rng.random(3000) + 0.3 * labels, 2)  # rounding makes many ties
    value = auc(labels, scores)
    assert value == pytest.approx(brute_force_auc(labels, scores), abs=1e-12)
    assert auc(labels, np.exp(3 * scores)) == pytest.approx(value, abs=1e-12)


def test_logloss_calibration_ne() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.8, 0.2, 0.6, 0.4])
    expected = -(math.log(0.8) + math.log(0.8) + math.log(0.6) + math.log(0.6)) / 4
    assert logloss(y, p) == pytest.approx(expected)
    assert logloss(np.array([1]), np.array([0.0])) == pytest.approx(-math.log(1e-7))  # clipped, finite
    assert calibration(y, p) == pytest.approx(1.0)
    assert calibration(y, np.full(4, 0.75)) == pytest.approx(1.5)
    assert normalized_entropy(y, np.full(4, 0.5)) == pytest.approx(1.0)
    assert set(ctr_metrics(y, p)) == {"auc", "logloss", "calibration", "normalized_entropy"}


def test_metric_input_errors() -> None:
    with pytest.raises(DataError, match="only one class"):
        auc(np.array([1, 1]), np.array([0.1, 0.2]))
    with pytest.raises(DataError, match="3 labels but 2 scores"):
        auc(np.array([1, 0, 1]), np.array([0.1, 0.2]))
    with pytest.raises(DataError, match="NaN"):
        auc(np.array([1, 0]), np.array([np.nan, 0.2]))
    with pytest.raises(DataError, match="labels must be 0 or 1"):
        logloss(np.array([2, 0]), np.array([0.5, 0.5]))
    with pytest.raises(DataError, match="in \\[0, 1\\]"):
        logloss(np.array([1, 0]), np.array([1.5, 0.5]))
    with pytest.raises(DataError, match="without any positive"):
        calibration(np.array([0, 0]), np.array([0.5, 0.5]))
