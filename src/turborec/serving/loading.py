"""Artifacts -> ``ServingModel``: a registry keyed by artifact kind, and the adapter for trained estimators."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from turborec._util.artifact import WEIGHTS, Artifact, load_artifact
from turborec.compress import load as load_compressed
from turborec.errors import ArtifactError
from turborec.retrieval import load_index
from turborec.serving.knobs import INDEX_DIR, SERVICE_EXACT, serving_section
from turborec.serving.model import ServingModel
from turborec.serving.net_model import NetServingModel
from turborec.train import Recommender, TwoStagePipeline
from turborec.train import load as load_recommender

ArtifactLoader = Callable[[Artifact, int], ServingModel]
_LOADERS: dict[str, ArtifactLoader] = {}


def register_artifact_loader(kind: str) -> Callable[[ArtifactLoader], ArtifactLoader]:
    """Teach the service to serve artifacts of ``kind`` (e.g. compressed or exported models)."""

    def deco(fn: ArtifactLoader) -> ArtifactLoader:
        _LOADERS[kind] = fn
        return fn

    return deco


def artifact_version(art: Artifact) -> str:
    """``<estimator or kind>-<first 12 hex of the weights' sha256>``: changes whenever the weights do."""
    name = art.config.get("estimator") or art.kind
    digest = art.files.get(WEIGHTS) or next(iter(sorted(art.files.values())), "0" * 12)
    return f"{name}-{digest[:12]}"


def load_serving_model(path: str | Path, history_len: int = 50) -> ServingModel:
    """Verify the artifact at ``path`` and build the serving model its kind registers."""
    return serving_model_from_artifact(load_artifact(path), history_len)


def serving_model_from_artifact(art: Artifact, history_len: int = 50) -> ServingModel:
    """The serving model an already verified artifact's kind registers."""
    loader = _LOADERS.get(art.kind)
    if loader is None:
        raise ArtifactError(
            f"{art.path}: cannot serve artifacts of kind {art.kind!r} (servable: {', '.join(sorted(_LOADERS))})"
        )
    return loader(art, history_len)


def serving_model_from_recommender(
    rec: Recommender, version: str, history_len: int = 50, **options: Any
) -> NetServingModel:
    """Adapt a fitted estimator: its net, vocabularies, training histories (seen items and user-tower input).

    ``options`` go to :class:`NetServingModel` (``pool_size``, a ``ranker``...).
    """
    net = rec._require()
    assert rec.users is not None and rec.items is not None and rec.histories is not None
    hist = rec.histories
    own_len = rec.history_len
    length = own_len if (own_len is not None and net.uses_history) else history_len
    popularity = np.bincount(hist.items, minlength=len(rec.items)).astype(np.float64)
    return NetServingModel(
        net.cpu(), rec.users, rec.items, version=version, seen=(hist.offsets, hist.items),
        popularity=popularity, history_len=max(int(length), 1), **options,
    )


@register_artifact_loader("retrieval")
def _retrieval(art: Artifact, history_len: int) -> ServingModel:
    rec: Any = load_recommender(art.path) if not art.config.get("transforms") else load_compressed(art.path)
    knobs = serving_section(art.config)
    if knobs.backend == "torch-eager" and knobs.index == SERVICE_EXACT:
        return serving_model_from_recommender(rec, artifact_version(art), history_len)
    # a tuned artifact: serve the backend and index ``turborec tune`` measured (accelerated imports this module)
    from turborec.serving.accelerated import build_serving_model

    index_dir = art.path / INDEX_DIR
    index = load_index(index_dir) if (index_dir / "manifest.json").is_file() else None
    return build_serving_model(rec, knobs, artifact_version(art), index=index, history_len=history_len)


@register_artifact_loader("pipeline")
def _pipeline(art: Artifact, history_len: int) -> ServingModel:
    """A two-stage pipeline (``TwoStagePipeline.save``); its history window is the retriever's, not ``history_len``."""
    from turborec.serving.pipeline_model import serving_model_from_pipeline  # it builds on this module

    return serving_model_from_pipeline(TwoStagePipeline.load(art.path), artifact_version(art))
