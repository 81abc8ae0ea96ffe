"""Serving models for a tuned configuration (moved to :mod:`turborec.serving.accelerated` and
:mod:`turborec.serving.knobs`, where ``turborec serve`` uses them; the names stay importable here)."""

from __future__ import annotations

from pathlib import Path

from turborec.errors import ConfigError
from turborec.retrieval import load_index
from turborec.serving.accelerated import (
    AcceleratedServingModel,
    UserTowerPart,
    build_index,
    build_serving_model,
    user_tower_runner,
)
from turborec.serving.knobs import INDEX_DIR, SERVING_KEY, ServingKnobs, serving_section
from turborec.serving.loading import artifact_version
from turborec.serving.model import ServingModel
from turborec.train.recommender import Recommender


def load_tuned_serving_model(path: str | Path) -> tuple[ServingModel, ServingKnobs]:
    """Rebuild the serving model a tuned artifact describes (compressed weights, backend, index)
    and the knobs it records (micro-batching for ``ServeSettings``)."""
    from turborec._util.artifact import load_artifact
    from turborec.compress import load as load_any

    art = load_artifact(path, kinds=("retrieval",))
    rec = load_any(art.path)
    if not isinstance(rec, Recommender):
        raise ConfigError(f"{path}: not a retrieval model")
    knobs = serving_section(art.config)
    index = load_index(art.path / INDEX_DIR) if (art.path / INDEX_DIR / "manifest.json").is_file() else None
    return build_serving_model(rec, knobs, artifact_version(art), index=index), knobs


__all__ = [
    "INDEX_DIR",
    "SERVING_KEY",
    "AcceleratedServingModel",
    "UserTowerPart",
    "build_index",
    "build_serving_model",
    "load_tuned_serving_model",
    "serving_section",
    "user_tower_runner",
]
