"""Artifacts -> ``ServingModel``: a registry keyed by artifact kind.

The artifact is opened by :func:`turborec.loading.load` (compressed models' transforms replayed, a
tune folder's model found), so the service takes every kind the rest of the package writes; a kind it
cannot serve is refused in one line naming the kinds it takes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from turborec._util.artifact import WEIGHTS, Artifact, load_artifact
from turborec.loading import PIPELINE, RANKER, RETRIEVAL, refusal
from turborec.loading import load as load_any
from turborec.retrieval import load_index
from turborec.serving.accelerated import build_serving_model
from turborec.serving.knobs import INDEX_DIR, ServingKnobs, serving_section
from turborec.serving.model import ServingModel
from turborec.serving.pipeline_model import serving_model_from_pipeline
from turborec.train import Recommender, TwoStagePipeline
from turborec.train.ctr import LoadedRanker

ArtifactLoader = Callable[[Artifact, int], ServingModel]
_LOADERS: dict[str, ArtifactLoader] = {}


def register_artifact_loader(kind: str) -> Callable[[ArtifactLoader], ArtifactLoader]:
    """Teach the service to serve artifacts of ``kind``."""

    def deco(fn: ArtifactLoader) -> ArtifactLoader:
        _LOADERS[kind] = fn
        return fn

    return deco


def servable_kinds() -> list[str]:
    return sorted(_LOADERS)


def artifact_version(art: Artifact) -> str:
    """``<estimator or kind>-<first 12 hex of the weights' sha256>``: changes whenever the weights do."""
    name = art.config.get("estimator") or art.kind
    digest = art.files.get(WEIGHTS) or next(iter(sorted(art.files.values())), "0" * 12)
    return f"{name}-{digest[:12]}"


def load_serving_model(path: str | Path, history_len: int = 50) -> ServingModel:
    """Verify the artifact at ``path`` (or a tune folder's model) and build the serving model its kind registers."""
    return serving_model_from_artifact(load_artifact(path), history_len)


def load_tuned_serving_model(path: str | Path) -> tuple[ServingModel, ServingKnobs]:
    """What ``turborec serve`` builds from the artifact at ``path`` (a tuned one's backend and index), and the
    serving knobs it records (micro-batching and admission for ``ServeSettings``; defaults when untuned)."""
    art = load_artifact(path)
    return serving_model_from_artifact(art), serving_section(art.config)


def serving_model_from_artifact(art: Artifact, history_len: int = 50) -> ServingModel:
    """The serving model an already verified artifact's kind registers."""
    loader = _LOADERS.get(art.kind)
    if loader is None:
        raise refusal(art.path, art.kind, "serve", servable_kinds())
    return loader(art, history_len)


@register_artifact_loader(RETRIEVAL)
def _retrieval(art: Artifact, history_len: int) -> ServingModel:
    """A retrieval model, plain or compressed; a tuned one with the backend and index ``turborec tune`` chose."""
    rec = load_any(art.path, accept=(RETRIEVAL,), command="serve")
    assert isinstance(rec, Recommender)
    index_dir = art.path / INDEX_DIR
    index = load_index(index_dir) if (index_dir / "manifest.json").is_file() else None
    return build_serving_model(rec, serving_section(art.config), artifact_version(art), index=index,
                               history_len=history_len)


@register_artifact_loader(PIPELINE)
def _pipeline(art: Artifact, history_len: int) -> ServingModel:
    """A two-stage pipeline; its history window is the retriever's, not ``history_len``."""
    pipe = load_any(art.path, accept=(PIPELINE,), command="serve")
    assert isinstance(pipe, TwoStagePipeline)
    return serving_model_from_pipeline(pipe, artifact_version(art))



@register_artifact_loader(RANKER)
def _ranker(art: Artifact, history_len: int) -> ServingModel:
    """A CTR ranker, plain or compressed: scores rows on ``POST /v1/score`` (``history_len`` unused)."""
    from turborec.serving.ranker_model import RankerServingModel  # it builds on this module

    ranker = load_any(art.path, accept=(RANKER,), command="serve")
    assert isinstance(ranker, LoadedRanker)
    return RankerServingModel(ranker, artifact_version(art))


__all__ = [
    "artifact_version",
    "load_serving_model",
    "load_tuned_serving_model",
    "register_artifact_loader",
    "servable_kinds",
    "serving_model_from_artifact",
]
