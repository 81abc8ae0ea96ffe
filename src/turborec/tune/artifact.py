"""The chosen configuration as an artifact: the (compressed) retrieval model, its index, and the tuned
serving settings in the manifest's ``config.serving`` section.

It is a normal ``retrieval`` artifact (``turborec.load`` reads it, or the tune folder above it;
estimators ignore the extra config section). ``config.serving`` holds the
:class:`~turborec.tune.space.ServingKnobs` (backend, index spec, max_batch, max_wait_ms,
executor) plus the SLO and rate it was tuned for; ``index/`` holds the built index when the
configuration uses one. :func:`turborec.serving.loading.load_tuned_serving_model` (what ``turborec serve``
builds) rebuilds the exact serving path from it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from turborec._util.artifact import load_artifact, save_artifact
from turborec.retrieval import Index
from turborec.serving.knobs import INDEX_DIR, SERVING_KEY
from turborec.train.recommender import Recommender
from turborec.tune.space import ServingKnobs


def save_tuned(
    path: str | Path,
    rec: Recommender,
    knobs: ServingKnobs,
    *,
    index: Index | None = None,
    tuned_for: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``rec`` with ``knobs`` (and ``index``) recorded, atomically, as one artifact at ``path``."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.model-", dir=dest.parent) as tmp:
        model_dir = rec.save(Path(tmp) / "model", metrics=metrics)
        art = load_artifact(model_dir)
        json_files = {rel: art.json(rel) for rel in art.files if rel.endswith(".json")}
        tensors = art.torch_tensors()

        def write_index(root: Path) -> None:
            if index is not None:
                index.save(root / INDEX_DIR)

        serving = {**knobs.to_dict(), **dict(tuned_for or {})}
        return save_artifact(
            dest, kind=art.kind, config={**art.config, SERVING_KEY: serving}, tensors=tensors,
            json_files=json_files, extra=write_index, metrics=art.metrics, info={**art.info, "tuned": True},
        )


__all__ = ["save_tuned"]
