"""Training and the ``implicit``-style estimators (fit / recommend / similar_items / save / load)."""

from turborec.train.estimators import BPRRecommender, EASERecommender, PopularityRecommender, TwoTowerRecommender
from turborec.train.history import Histories
from turborec.train.recommender import Recommender, estimator_class, known_estimators, load, register_estimator
from turborec.train.trainer import TrainConfig, TrainHistory, fit_loop, seed_everything

__all__ = [
    "BPRRecommender",
    "EASERecommender",
    "Histories",
    "PopularityRecommender",
    "Recommender",
    "TrainConfig",
    "TrainHistory",
    "TwoTowerRecommender",
    "estimator_class",
    "fit_loop",
    "known_estimators",
    "load",
    "register_estimator",
    "seed_everything",
]
