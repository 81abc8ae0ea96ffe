"""turborec.export: on-device (edge) bundles of a fitted two-tower model, and their session evaluation."""

from turborec.export.edge_export import (
    DEFAULT_MAX_BYTES,
    EdgeExportConfig,
    export_edge_bundle,
    export_edge_models,
    write_bundle,
)
from turborec.export.edge_modules import DotScorer, EdgeUserModel, MLPReranker
from turborec.export.edge_session import EdgeModels, SessionFactory, two_tower_net
from turborec.export.reranker import RerankerConfig, fit_reranker
from turborec.export.sessions import (
    Replay,
    Session,
    bind_sessions,
    candidate_coverage,
    device_ranker,
    evaluate_next_click,
    replays,
    static_filtered_ranker,
    static_ranker,
    user_time_split,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DotScorer",
    "EdgeExportConfig",
    "EdgeModels",
    "EdgeUserModel",
    "MLPReranker",
    "Replay",
    "RerankerConfig",
    "Session",
    "SessionFactory",
    "bind_sessions",
    "candidate_coverage",
    "device_ranker",
    "evaluate_next_click",
    "export_edge_bundle",
    "export_edge_models",
    "fit_reranker",
    "replays",
    "static_filtered_ranker",
    "static_ranker",
    "two_tower_net",
    "user_time_split",
    "write_bundle",
]
