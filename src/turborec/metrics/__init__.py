"""Evaluation metrics: full-ranking top-K metrics and CTR metrics (numpy in)."""

from turborec.metrics.ctr import auc, calibration, ctr_metrics, logloss, normalized_entropy
from turborec.metrics.ranking import RankingReport, evaluate_ranking, ranking_metrics_from_topk, top_k_from_scores

__all__ = [
    "RankingReport",
    "auc",
    "calibration",
    "ctr_metrics",
    "evaluate_ranking",
    "logloss",
    "normalized_entropy",
    "ranking_metrics_from_topk",
    "top_k_from_scores",
]
