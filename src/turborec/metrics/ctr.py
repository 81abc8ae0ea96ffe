"""CTR metrics on numpy arrays: ROC AUC, log loss, calibration, normalized entropy.

All take ``labels`` (0/1, any numeric dtype) and ``scores``/``probs`` of the same
length. AUC is the Mann-Whitney statistic from average ranks, so tied scores
count one half, in O(N log N).
"""

from __future__ import annotations

import numpy as np

from turborec.errors import DataError


def _check(labels: np.ndarray, scores: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise DataError(f"{what}: {y.size} labels but {s.size} scores")
    if y.size == 0:
        raise DataError(f"{what}: no rows")
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError(f"{what}: labels must be 0 or 1")
    if not np.isfinite(s).all():
        raise DataError(f"{what}: scores contain NaN or infinity")
    return y, s


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC: probability that a random positive scores above a random negative (ties = 1/2)."""
    y, s = _check(labels, scores, "auc")
    n_pos = float(y.sum())
    n_neg = float(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"auc: undefined with only one class ({int(n_pos)} positives, {int(n_neg)} negatives)")
    order = np.argsort(s, kind="mergesort")
    sorted_scores = s[order]
    # average 1-based rank of each run of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], s.size]
    run_rank = 0.5 * (starts + 1 + ends)
    ranks = np.repeat(run_rank, ends - starts)
    pos_rank_sum = float(ranks[y[order] == 1.0].sum())
    return (pos_rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy with probabilities clipped to [eps, 1 - eps]."""
    y, p = _check(labels, probs, "logloss")
    if (p < 0).any() or (p > 1).any():
        raise DataError("logloss: probabilities must lie in [0, 1]")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def calibration(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean predicted probability over observed click rate (1.0 = calibrated, > 1 over-predicts)."""
    y, p = _check(labels, probs, "calibration")
    rate = float(y.mean())
    if rate == 0.0:
        raise DataError("calibration: undefined without any positive label")
    return float(p.mean()) / rate


def normalized_entropy(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Log loss divided by the entropy of the observed click rate (< 1 beats predicting the rate)."""
    y, _ = _check(labels, probs, "normalized_entropy")
    rate = float(np.clip(y.mean(), eps, 1.0 - eps))
    base = -(rate * np.log(rate) + (1.0 - rate) * np.log1p(-rate))
    return float(logloss(labels, probs, eps) / base)


def ctr_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """``{"auc", "logloss", "calibration", "normalized_entropy"}`` for predicted probabilities."""
    return {
        "auc": auc(labels, probs),
        "logloss": logloss(labels, probs),
        "calibration": calibration(labels, probs),
        "normalized_entropy": float(normalized_entropy(labels, probs)),
    }


__all__ = ["auc", "calibration", "ctr_metrics", "logloss", "normalized_entropy"]
