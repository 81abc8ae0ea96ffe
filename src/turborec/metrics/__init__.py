"""Evaluation metrics: full-ranking top-K metrics and CTR metrics (numpy in)."""

from turborec.metrics.ranking import RankingReport, evaluate_ranking, ranking_metrics_from_topk, top_k_from_scores

__all__ = ["RankingReport", "evaluate_ranking", "ranking_metrics_from_topk", "top_k_from_scores"]
