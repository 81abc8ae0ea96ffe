"""One loader for every artifact turborec writes: ``turborec.load(path)``.

The manifest's ``kind`` picks the object, whatever wrote it:

- ``retrieval`` -- a fitted estimator (:class:`~turborec.train.Recommender`: ``recommend``,
  ``recommend_for_history``, ``similar_items``, ``evaluate``, ``save``), from ``turborec train``,
  compressed by any transform (``turborec compress``: its transform records are replayed), or tuned
  (``turborec tune --out DIR``: give ``DIR`` itself or ``DIR/model``);
- ``pipeline`` -- a :class:`~turborec.train.TwoStagePipeline` (the same verbs, re-ranked);
- ``ranker`` -- a CTR ranker (:class:`~turborec.train.LoadedRanker`: ``predict`` on raw or encoded rows).

Commands that serve only some kinds call :func:`load` with ``accept`` (or :func:`require_kind`) and
refuse the others in one line naming the kinds they take. This module sits above ``compress`` (it
replays transforms) and below ``serving`` (which builds its models from what it returns).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from turborec._util.artifact import MANIFEST, artifact_root, load_artifact
from turborec.compress import TransformReplay
from turborec.compress import load as load_with_transforms
from turborec.errors import ArtifactError
from turborec.train.ctr import RANKER_KIND, LoadedRanker
from turborec.train.pipeline import TwoStagePipeline
from turborec.train.recommender import Recommender

RETRIEVAL, PIPELINE, RANKER = "retrieval", "pipeline", RANKER_KIND
KIND_NAMES = {  # kind -> (what a command takes, what one artifact is)
    RETRIEVAL: ("retrieval models (plain, compressed or tuned)", "a retrieval model"),
    PIPELINE: ("two-stage pipelines", "a two-stage pipeline"),
    RANKER: ("CTR rankers", "a CTR ranker"),
}
RETRIEVAL_LIKE = (RETRIEVAL, PIPELINE)  # what recommends items for users: evaluate, recommend, serve

Loaded: TypeAlias = Recommender | TwoStagePipeline | LoadedRanker


def _retrieval(path: Path, device: str) -> Recommender:
    rec = load_with_transforms(path, device=device)  # any compression replayed
    assert isinstance(rec, Recommender)
    rec.servable()  # its parts agree (ServableView.validate): checked once here, for every consumer
    return rec


def _pipeline(path: Path, device: str) -> TwoStagePipeline:
    pipe = TwoStagePipeline.load(path, device=device, hooks=TransformReplay())  # a compressed retriever too
    pipe.retriever.servable()
    return pipe


def _ranker(path: Path, device: str) -> LoadedRanker:
    loaded = load_with_transforms(path)  # rankers load on the CPU
    assert isinstance(loaded, LoadedRanker)
    loaded.model.to(device)
    return loaded


_LOADERS: dict[str, Callable[[Path, str], Any]] = {RETRIEVAL: _retrieval, PIPELINE: _pipeline, RANKER: _ranker}


def artifact_kind(path: str | Path) -> str:
    """The kind the artifact at ``path`` (or in a tune folder) declares; a one-line ArtifactError when there is
    no readable manifest. Reads only the manifest: the kind's loader verifies every checksum."""
    root = artifact_root(path)
    try:
        with open(root / MANIFEST, encoding="utf-8") as f:
            manifest: Any = json.load(f)
        return str(manifest["kind"])
    except (OSError, ValueError, KeyError, TypeError):
        load_artifact(root)  # says what is wrong (no directory, no manifest, corrupted, foreign)
        raise ArtifactError(f"{root}: the manifest declares no artifact kind") from None


def describe_kinds(kinds: Sequence[str]) -> str:
    known = [k for k in KIND_NAMES if k in kinds] + sorted(k for k in kinds if k not in KIND_NAMES)
    names = [KIND_NAMES[k][0] if k in KIND_NAMES else f"'{k}' artifacts" for k in known]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def refusal(path: str | Path, kind: str, command: str, accept: Sequence[str]) -> ArtifactError:
    """The one line a command that cannot take a ``kind`` artifact prints: the kinds it does take."""
    what = f"{KIND_NAMES[kind][1]} (kind '{kind}')" if kind in KIND_NAMES else f"of kind '{kind}'"
    return ArtifactError(f"{path}: {command} takes {describe_kinds(accept)}; this artifact is {what}")


def require_kind(path: str | Path, command: str, accept: Sequence[str]) -> str:
    """The artifact's kind when ``command`` takes it; else one ArtifactError line naming the kinds it takes."""
    kind = artifact_kind(path)
    if kind not in accept:
        raise refusal(path, kind, command, accept)
    return kind


def load(path: str | Path, device: str = "cpu", *, accept: Sequence[str] | None = None,
         command: str = "this") -> Loaded:
    """Open the artifact at ``path`` -- any kind turborec writes, compressed or not, or a tune folder -- as
    the object with the verbs for its kind (see the module docs). With ``accept``, other kinds are refused
    in one line naming ``command`` and the kinds it takes."""
    kind = require_kind(path, command, accept) if accept is not None else artifact_kind(path)
    loader = _LOADERS.get(kind)
    if loader is None:
        raise ArtifactError(f"{path}: unknown artifact kind '{kind}' (turborec reads {describe_kinds(list(_LOADERS))})")
    return loader(artifact_root(path), device)  # type: ignore[no-any-return]


__all__ = [
    "KIND_NAMES",
    "PIPELINE",
    "RANKER",
    "RETRIEVAL",
    "RETRIEVAL_LIKE",
    "Loaded",
    "artifact_kind",
    "describe_kinds",
    "load",
    "refusal",
    "require_kind",
]
