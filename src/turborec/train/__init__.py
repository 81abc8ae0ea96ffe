"""Training and the ``implicit``-style estimators (fit / recommend / similar_items / save / load)."""

from turborec.train.ctr import (
    CTRFitResult,
    CTRTrainConfig,
    CTRTrainer,
    LoadedRanker,
    evaluate_ranker,
    fit_ranker,
    load_ranker,
    predict_ranker,
    save_ranker,
)
from turborec.train.estimators import BPRRecommender, EASERecommender, PopularityRecommender, TwoTowerRecommender
from turborec.train.history import Histories
from turborec.train.pipeline import PipelineConfig, TwoStagePipeline
from turborec.train.recommender import (
    Recommender,
    ServableView,
    estimator_class,
    known_estimators,
    load,
    register_estimator,
)
from turborec.train.trainer import TrainConfig, TrainHistory, fit_loop, seed_everything

__all__ = [
    "BPRRecommender",
    "CTRFitResult",
    "CTRTrainConfig",
    "CTRTrainer",
    "EASERecommender",
    "Histories",
    "LoadedRanker",
    "PipelineConfig",
    "PopularityRecommender",
    "Recommender",
    "ServableView",
    "TrainConfig",
    "TrainHistory",
    "TwoStagePipeline",
    "TwoTowerRecommender",
    "estimator_class",
    "evaluate_ranker",
    "fit_loop",
    "fit_ranker",
    "known_estimators",
    "load",
    "load_ranker",
    "predict_ranker",
    "register_estimator",
    "save_ranker",
    "seed_everything",
]
