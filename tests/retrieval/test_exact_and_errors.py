"""Exact search against a naive argsort reference, the l2 metric, ids, training and artifact errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turborec.errors import ArtifactError, ConfigError, DataError
from turborec.retrieval import load_index, make_index, recall_at_k


def _full_scores(catalog: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    if metric == "ip":
        return queries @ catalog.T
    return -((queries[:, None, :] - catalog[None, :, :]) ** 2).sum(-1)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    dim=st.integers(1, 12),
    nq=st.integers(1, 20),
    k=st.integers(1, 40),
    item_chunk=st.integers(1, 64),
    query_batch=st.integers(1, 8),
    n_excluded=st.integers(0, 50),
    metric=st.sampled_from(["ip", "l2"]),
    seed=st.integers(0, 2**16),
)
def test_exact_matches_naive_reference_for_any_chunking(
    n: int, dim: int, nq: int, k: int, item_chunk: int, query_batch: int, n_excluded: int, metric: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    catalog = rng.standard_normal((n, dim)).astype(np.float32)
    queries = rng.standard_normal((nq, dim)).astype(np.float32)
    exclude = [rng.choice(n, size=min(n_excluded, n), replace=False) for _ in range(nq)]
    index = make_index(f"Exact|item_chunk={item_chunk},query_batch={query_batch}", dim, metric=metric)
    index.add(catalog)
    ids, scores = index.search(queries, k, exclude=exclude)
    full = _full_scores(catalog.astype(np.float64), queries.astype(np.float64), metric)
    for row, own in enumerate(exclude):
        full[row, own] = -np.inf
    ref_scores = -np.sort(-full, axis=1)[:, : min(k, n)]
    assert ids.shape == (nq, min(k, n))
    valid = np.isfinite(ref_scores)
    np.testing.assert_array_equal(ids[~valid], -1)
    np.testing.assert_allclose(scores[valid], ref_scores[valid], rtol=1e-4, atol=1e-3)
    # the same items (ties aside): each returned id truly scores what the reference's item at that rank does
    got = np.take_along_axis(full, np.maximum(ids, 0), axis=1)
    np.testing.assert_allclose(got[valid], ref_scores[valid], rtol=1e-4, atol=1e-3)


def test_l2_metric_exact_and_faiss_agree() -> None:
    rng = np.random.default_rng(0)
    catalog = rng.standard_normal((500, 8)).astype(np.float32)
    queries = rng.standard_normal((20, 8)).astype(np.float32)
    exact, flat = make_index("Exact", 8, metric="l2"), make_index("Flat", 8, metric="l2")
    exact.add(catalog)
    flat.add(catalog)
    (a, sa), (b, sb) = exact.search(queries, 5), flat.search(queries, 5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(sa, sb, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sa[:, 0], -((queries - catalog[a[:, 0]]) ** 2).sum(1), rtol=1e-4)


def test_empty_index_and_incremental_adds() -> None:
    index = make_index("Exact", 4)
    ids, scores = index.search(np.ones((3, 4), np.float32), 5)
    assert ids.shape == (3, 0) and scores.shape == (3, 0)
    index.add(np.eye(4, dtype=np.float32))
    index.add(2 * np.eye(4, dtype=np.float32), ids=np.array([10, 11, 12, 13]))
    ids, _ = index.search(np.eye(4, dtype=np.float32), 2)
    np.testing.assert_array_equal(ids, [[10, 0], [11, 1], [12, 2], [13, 3]])


def test_bad_ids_and_vectors_raise_data_error() -> None:
    index = make_index("Flat", 4)
    index.add(np.ones((2, 4), np.float32), ids=np.array([5, 6]))
    with pytest.raises(DataError, match="unique"):
        index.add(np.ones((1, 4), np.float32), ids=np.array([6]))
    with pytest.raises(DataError, match="non-negative"):
        index.add(np.ones((1, 4), np.float32), ids=np.array([-2]))
    with pytest.raises(DataError, match="shape"):
        index.add(np.ones((2, 4), np.float32), ids=np.array([7]))
    with pytest.raises(DataError, match="NaN"):
        index.add(np.full((1, 4), np.nan, np.float32))
    with pytest.raises(DataError, match="integer"):
        index.search(np.ones((1, 4), np.float32), 1, exclude=np.array([0.5]))
    with pytest.raises(ConfigError, match="k must"):
        index.search(np.ones((1, 4), np.float32), 0)


def test_ivf_and_pq_need_enough_training_vectors() -> None:
    with pytest.raises(ConfigError, match="at least 64 training vectors"):
        make_index("IVF64,Flat", 8).add(np.ones((10, 8), np.float32))
    with pytest.raises(ConfigError, match="at least 256 training vectors"):
        make_index("IVF4,PQ4", 8).add(np.random.default_rng(0).standard_normal((100, 8)))


def test_explicit_training_then_chunked_adds(catalog: np.ndarray, queries: np.ndarray) -> None:
    whole = make_index("IVF16,Flat|nprobe=16", catalog.shape[1])
    whole.add(catalog)
    chunked = make_index("IVF16,Flat|nprobe=16", catalog.shape[1])
    chunked.train(catalog)
    assert chunked.is_trained
    for start in range(0, len(catalog), 1000):
        chunked.add(catalog[start : start + 1000])
    np.testing.assert_array_equal(whole.search(queries, 10)[0], chunked.search(queries, 10)[0])
    with pytest.raises(ConfigError, match="already trained"):
        chunked.train(catalog)


def test_recall_at_k_with_precomputed_truth(catalog: np.ndarray, queries: np.ndarray) -> None:
    exact = make_index("Exact", catalog.shape[1])
    exact.add(catalog)
    truth, _ = exact.search(queries, 10)
    assert recall_at_k(exact, truth, queries, 10) == 1.0
    shifted = truth.copy()
    shifted[:, 5:] = -1  # only 5 relevant per query: a perfect index still scores 1
    assert recall_at_k(exact, shifted, queries, 10) == 1.0
    ivf = make_index("IVF16,Flat|nprobe=1", catalog.shape[1])
    ivf.add(catalog)
    assert recall_at_k(ivf, truth, queries, 10) < recall_at_k(exact, truth, queries, 10)


def test_corrupted_or_foreign_artifacts_raise(tmp_path, catalog: np.ndarray) -> None:
    index = make_index("HNSW8", catalog.shape[1])
    index.add(catalog[:200])
    path = index.save(tmp_path / "idx")
    blob = path / "index" / "faiss.index"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum"):
        load_index(path)
    with pytest.raises(ArtifactError):
        load_index(tmp_path / "missing")
    exact = make_index("Exact", 4)
    exact.add(np.eye(4, dtype=np.float32))
    other = exact.save(tmp_path / "exact")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["config"]["spec"] = "Nonsense"
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="malformed"):
        load_index(other)


def test_search_positions_excludes_pairs_like_search_excludes_ids() -> None:
    """The service's call (exclusions as (query, position) pairs) answers what ``search`` answers with the same
    exclusions as per-query id lists -- through ExactIndex's own path and through the base class's
    default (what a FAISS index serves with)."""
    from turborec.retrieval import Index

    rng = np.random.default_rng(3)
    catalog = rng.standard_normal((500, 8)).astype(np.float32)
    queries = rng.standard_normal((7, 8)).astype(np.float32)
    index = make_index("Exact|query_batch=3", dim=8)
    index.add(catalog)
    per_query = [rng.choice(500, size=n, replace=False) for n in (0, 5, 40, 1, 0, 499, 12)]
    rows = np.repeat(np.arange(7), [len(p) for p in per_query])
    cols = np.concatenate(per_query).astype(np.int64)
    want_ids, want_scores = index.search(queries, 20, exclude=per_query)
    for got_pos, got_scores in (index.search_positions(queries, 20, rows, cols),
                                Index.search_positions(index, queries, 20, rows, cols)):
        np.testing.assert_array_equal(got_pos, want_ids)  # identity ids: positions are ids
        np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6)
    assert (want_ids[5] >= 0).sum() == 1 and np.isinf(want_scores[5][1:]).all()  # one item left for query 5
