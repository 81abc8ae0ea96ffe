"""The ONNX runtime path against the server-side torch model: exact for fp32 graphs, within a stated
tolerance for the int8 bundle; re-rank semantics; graph properties (plain gathers, int8 weights)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from turborec.edge import EdgeBundle, EdgeReranker
from turborec.errors import ConfigError
from turborec.export import (
    EdgeExportConfig,
    EdgeModels,
    EdgeUserModel,
    MLPReranker,
    SessionFactory,
    export_edge_models,
)
from turborec.train import TwoTowerRecommender
from turborec.train.history import pad_lists

# Stated tolerance of the int8 bundle (int8 row-wise tables + int8 MLP weights) against the float server
# model, for the two-tower's logits (cosine / temperature + item bias): scores within 1% of their spread
# across the catalog, user vectors with cosine >= 0.995, and 8 of the server's top 10 kept.
INT8_SCORE_TOL = 0.01
INT8_COSINE = 0.995
INT8_TOP10_OVERLAP = 8


def _server_scores(rec: TwoTowerRecommender, user: int, clicked_items: np.ndarray, candidates: np.ndarray):  # type: ignore[no-untyped-def]
    """What the server computes for the same session state: float user tower over history + clicks."""
    assert rec.histories is not None
    history = np.concatenate([rec.histories.of(user), clicked_items])
    padded = pad_lists([history], rec.config.history_len)  # type: ignore[attr-defined]
    user_vec = rec.user_vectors(np.array([user]), padded)[0]
    item_vecs = rec.item_vectors()
    return user_vec, item_vecs[candidates] @ user_vec, item_vecs @ user_vec


def test_int8_bundle_matches_the_server_model(two_tower: TwoTowerRecommender, dot_models: EdgeModels, user_index: int) -> None:
    assert two_tower.histories is not None and two_tower.items is not None
    bundle = SessionFactory(two_tower, dot_models, 300).session(user_index, two_tower.histories.of(user_index))
    reranker = EdgeReranker(bundle)
    candidates = two_tower.items.encode(list(bundle.item_ids))
    for clicks in ([], bundle.item_ids[5:6], bundle.item_ids[10:14]):
        clicked_items = two_tower.items.encode(list(clicks)).astype(np.int64)
        server_vec, server, catalog = _server_scores(two_tower, user_index, clicked_items, candidates)
        edge_vec = reranker.user_vector(list(clicks))
        edge = reranker.scores(list(clicks))
        cosine = float(edge_vec @ server_vec / np.linalg.norm(edge_vec) / np.linalg.norm(server_vec))
        assert cosine >= INT8_COSINE
        spread = float(catalog.max() - catalog.min())
        assert np.abs(edge - server).max() <= INT8_SCORE_TOL * spread
        top_server = set(np.argsort(-server)[:10].tolist())
        top_edge = set(np.argsort(-edge)[:10].tolist())
        assert len(top_server & top_edge) >= INT8_TOP10_OVERLAP


def test_fp32_graphs_equal_the_torch_modules(two_tower: TwoTowerRecommender, user_index: int) -> None:
    """The exported graphs compute exactly what the torch modules compute on the same int8 tables."""
    torch.manual_seed(1)
    reranker_module = MLPReranker(hidden=8).eval()
    models = export_edge_models(two_tower, reranker_module, EdgeExportConfig(quantize=False))
    assert two_tower.histories is not None and two_tower.items is not None
    bundle = SessionFactory(two_tower, models, 200).session(user_index, two_tower.histories.of(user_index))
    runtime = EdgeReranker(bundle)
    clicked_rows = np.array([3, 17, 42])
    t = {k: torch.from_numpy(v) for k, v in bundle.tensors.items()}
    n_cand, n_hist = bundle.n_candidates, len(bundle.history_ids)
    history = np.concatenate([np.arange(n_cand, n_cand + n_hist), clicked_rows])[-bundle.history_len :]
    hist_row = torch.full((1, bundle.history_len), -1, dtype=torch.int32)
    hist_row[0, : len(history)] = torch.from_numpy(history.astype(np.int32))
    recent = torch.full((1, bundle.recent_len), -1, dtype=torch.int32)
    recent[0, :3] = torch.tensor([42, 17, 3], dtype=torch.int32)
    with torch.no_grad():
        user_vec = EdgeUserModel(two_tower.net).eval()(  # type: ignore[arg-type]
            hist_row, t["input_q"], t["input_scale"], t["input_bias"], t["user_part"][None]
        )
        expected = reranker_module(
            user_vec, t["server_vec"][None], recent, t["item_q"], t["item_scale"], t["item_bias"], t["prior"]
        )[0].numpy()
    ids = [bundle.item_ids[r] for r in clicked_rows]
    np.testing.assert_allclose(runtime.user_vector(ids), user_vec[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(runtime.scores(ids), expected, rtol=1e-4, atol=1e-5)


def test_rerank_semantics(mlp_bundle: EdgeBundle) -> None:
    reranker = EdgeReranker(mlp_bundle)
    ids0, scores0 = reranker.rerank([])
    assert len(ids0) == mlp_bundle.n_candidates and np.all(np.diff(scores0) <= 0)
    clicks = [ids0[2], ids0[5], ids0[2]]  # a repeated click counts once for exclusion
    ids1, scores1 = reranker.rerank(clicks, k=20)
    assert len(ids1) == 20 and np.all(np.diff(scores1) <= 0)
    assert not {str(c) for c in clicks} & {str(i) for i in ids1}
    full = reranker.scores(clicks)
    rows = mlp_bundle.local_index(list(ids1))
    np.testing.assert_allclose(full[rows], scores1)
    assert not np.allclose(full, reranker.scores([])), "clicks must change the scores"
    kept, _ = reranker.rerank(clicks, exclude_clicked=False)
    assert len(kept) == mlp_bundle.n_candidates
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        reranker.rerank([], k=0)


def test_graphs_are_small_int8_and_plain_gathers(mlp_models: EdgeModels, dot_models: EdgeModels) -> None:
    for models in (mlp_models, dot_models):
        for blob in (models.user_model, models.reranker):
            model = onnx.load_from_string(blob)
            ops = {n.op_type for n in model.graph.node}
            assert not ops & {"Loop", "Scan", "If"}
            meta = {p.key: p.value for p in model.metadata_props}
            assert meta["turborec.model_version"] == models.model_version
        user_ops = {n.op_type for n in onnx.load_from_string(models.user_model).graph.node}
        assert "Gather" in user_ops and "MatMulInteger" in user_ops  # lookups as gathers; int8 MLP weights
        assert len(models.user_model) < 200_000
    mlp_ops = {n.op_type for n in onnx.load_from_string(mlp_models.reranker).graph.node}
    assert "MatMulInteger" in mlp_ops
