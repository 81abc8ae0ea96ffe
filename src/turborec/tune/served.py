"""Serving models for a tuned configuration (moved to :mod:`turborec.serving.accelerated` and
:mod:`turborec.serving.knobs`, where ``turborec serve`` uses them; the names stay importable here)."""

from __future__ import annotations

from pathlib import Path

from turborec._util.artifact import load_artifact
from turborec.serving.accelerated import (
    AcceleratedServingModel,
    UserTowerPart,
    build_index,
    build_serving_model,
    user_tower_runner,
)
from turborec.serving.knobs import INDEX_DIR, SERVING_KEY, ServingKnobs, serving_section
from turborec.serving.loading import serving_model_from_artifact
from turborec.serving.model import ServingModel


def load_tuned_serving_model(path: str | Path) -> tuple[ServingModel, ServingKnobs]:
    """Rebuild the serving model a tuned artifact describes (compressed weights, backend, index) -- what
    ``turborec serve`` builds from it -- and the knobs it records (micro-batching for ``ServeSettings``)."""
    art = load_artifact(path, kinds=("retrieval",))
    return serving_model_from_artifact(art), serving_section(art.config)


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
