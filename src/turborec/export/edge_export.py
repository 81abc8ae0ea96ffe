"""Export a fitted two-tower model for on-device re-ranking and write edge bundles.

>>> models = export_edge_models(rec, reranker=fit_reranker(...))   # once per model version
>>> bundle = SessionFactory(rec, models).session(user, history)     # once per session (request)
>>> write_bundle(bundle, "bundle/")                                  # <= max_bytes, checksummed

or in one call, :func:`export_edge_bundle` (what ``turborec export DIR --edge`` runs).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from turborec._util.artifact import save_artifact
from turborec.edge.bundle import BUNDLE_KIND, EDGE_FORMAT_VERSION, EdgeBundle, load_bundle
from turborec.errors import ConfigError
from turborec.export.edge_modules import DotScorer, EdgeUserModel
from turborec.export.edge_onnx import (
    check_plain_gathers,
    export_graph,
    model_version,
    quantize_weights_int8,
    with_metadata,
)
from turborec.export.edge_session import EdgeModels, SessionFactory, two_tower_net
from turborec.train.recommender import Recommender

DEFAULT_MAX_BYTES = 5_000_000  # the acceptance budget: 5 MB for models + one session's candidates


@dataclass(frozen=True)
class EdgeExportConfig:
    """Options of an edge export.

    ``n_candidates``: items sent per session; ``recent_len``: clicks the re-ranker looks at;
    ``quantize``: int8 weights for the models' MLPs; ``max_bytes``: the bundle's size budget
    (writing a larger bundle fails with a ConfigError saying what to shrink).
    """

    n_candidates: int = 500
    recent_len: int = 5
    quantize: bool = True
    per_channel: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        for name in ("n_candidates", "recent_len", "max_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"edge export: {name} must be a positive integer, got {value!r}")


def _inputs_of(module: nn.Module, available: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The example inputs a module's forward takes, in its parameter order."""
    params = [p for p in inspect.signature(module.forward).parameters if p in available]
    return {p: available[p] for p in params}


def export_edge_models(
    rec: Recommender, reranker: nn.Module | None = None, config: EdgeExportConfig | None = None
) -> EdgeModels:
    """ONNX graphs of the on-device user model and re-ranker (``DotScorer`` when ``reranker`` is None)."""
    cfg = config or EdgeExportConfig()
    net = two_tower_net(rec)
    user_model = EdgeUserModel(net).eval()
    scorer = (reranker or DotScorer()).eval()
    d, length = int(net.config.dim), int(net.config.history_len)
    v = int(rec.item_vectors().shape[1])
    rng = np.random.default_rng(0)
    rows, cands = 7, 11  # example sizes; the row/candidate axes are dynamic
    examples: dict[str, np.ndarray] = {
        "history": np.array([[0, 3, 5, *([-1] * (length - 3))]], dtype=np.int32)[:, :length],
        "input_q": rng.integers(0, 256, (rows, d), dtype=np.uint8),
        "input_scale": np.full(rows, 0.01, dtype=np.float32),
        "input_bias": np.full(rows, -1.0, dtype=np.float32),
        "user_part": rng.normal(size=(1, d)).astype(np.float32),
        "user_vec": rng.normal(size=(1, v)).astype(np.float32),
        "server_vec": rng.normal(size=(1, v)).astype(np.float32),
        "recent": np.array([[2, 1, *([-1] * (cfg.recent_len - 2))]], dtype=np.int32)[:, : cfg.recent_len],
        "item_q": rng.integers(0, 256, (cands, v), dtype=np.uint8),
        "item_scale": np.full(cands, 0.01, dtype=np.float32),
        "item_bias": np.full(cands, -1.0, dtype=np.float32),
        "prior": rng.random(cands).astype(np.float32),
    }
    axes = {
        "history": {0: "batch"}, "user_part": {0: "batch"}, "user_vec": {0: "batch"}, "server_vec": {0: "batch"},
        "recent": {0: "batch"}, "input_q": {0: "rows"}, "input_scale": {0: "rows"}, "input_bias": {0: "rows"},
        "item_q": {0: "candidates"}, "item_scale": {0: "candidates"}, "item_bias": {0: "candidates"},
        "prior": {0: "candidates"},
    }  # fmt: skip
    graphs: list[bytes] = []
    for module, out_axes in ((user_model, {0: "batch"}), (scorer, {0: "batch", 1: "candidates"})):
        inputs = _inputs_of(module, examples)
        dyn = {**{k: v for k, v in axes.items() if k in inputs}, "output": out_axes}
        graph = export_graph(module, inputs, dyn)
        if cfg.quantize:
            graph = quantize_weights_int8(graph, per_channel=cfg.per_channel)
        check_plain_gathers(graph, type(module).__name__)
        graphs.append(graph)
    version = model_version(*graphs)
    meta = {"turborec.model_version": version, "turborec.edge_format_version": str(EDGE_FORMAT_VERSION)}
    model_config = {
        "edge_format_version": EDGE_FORMAT_VERSION,
        "model_version": version,
        "source_model": rec.name,
        "dim": d,
        "vec_dim": v,
        "history_len": length,
        "recent_len": cfg.recent_len,
        "reranker": str(getattr(scorer, "kind", type(scorer).__name__)),
        "weights": "int8-dynamic" if cfg.quantize else "fp32",
        "embeddings": "int8-rowwise",
    }
    return EdgeModels(with_metadata(graphs[0], meta), with_metadata(graphs[1], meta), version, model_config)


def write_bundle(bundle: EdgeBundle, path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
    """Write ``bundle`` atomically with a checksummed manifest; refuse one larger than ``max_bytes``."""
    files = bundle.files()
    sizes = {name: len(blob) for name, blob in files.items()}
    total = sum(sizes.values())
    if total > max_bytes:
        per_candidate = (sizes["session.safetensors"] + sizes["session.json"]) / max(bundle.n_candidates, 1)
        fixed = total - per_candidate * bundle.n_candidates
        fits = int(max(0.0, (max_bytes - fixed) / max(per_candidate, 1e-9)))
        raise ConfigError(
            f"edge bundle would be {total:,} bytes, over the budget of {max_bytes:,} "
            f"(models {sizes['user_model.onnx'] + sizes['reranker.onnx']:,} bytes, session "
            f"{sizes['session.safetensors'] + sizes['session.json']:,} bytes); about {fits} candidates fit: "
            "lower n_candidates or raise max_bytes"
        )

    def write_files(tmp: Path) -> None:
        for name, blob in files.items():
            (tmp / name).write_bytes(blob)

    return save_artifact(
        path, kind=BUNDLE_KIND, config=bundle.config, extra=write_files,
        info={"sizes": sizes, "bundle_bytes": total},
    )  # fmt: skip


def export_edge_bundle(
    rec: Recommender,
    out: str | Path,
    *,
    user_id: Any = None,
    history_ids: Sequence[Any] | None = None,
    reranker: nn.Module | None = None,
    config: EdgeExportConfig | None = None,
) -> EdgeBundle:
    """Export models and one session and write the bundle to ``out``; returns the bundle as loaded back.

    The session is ``user_id``'s (its training history as pre-session history) or, for an anonymous
    session, ``history_ids`` (external item ids, oldest first; unknown ids raise UnknownIdError).
    """
    cfg = config or EdgeExportConfig()
    models = export_edge_models(rec, reranker, cfg)
    factory = SessionFactory(rec, models, cfg.n_candidates)
    assert rec.users is not None and rec.items is not None and rec.histories is not None
    user = -1
    history = np.zeros(0, dtype=np.int64)
    if user_id is not None:
        user = int(rec.users.encode([user_id])[0])
        history = rec.histories.of(user)
    if history_ids is not None:
        history = rec.items.encode(list(history_ids)).astype(np.int64)
    with torch.no_grad():
        bundle = factory.session(user, history)
    written = write_bundle(bundle, out, cfg.max_bytes)
    return load_bundle(written, expect_model_version=models.model_version)


__all__ = ["DEFAULT_MAX_BYTES", "EdgeExportConfig", "export_edge_bundle", "export_edge_models", "write_bundle"]
