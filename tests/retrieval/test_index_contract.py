"""The contract every Index passes: one suite, parametrized over specs, on a clustered catalog."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from turborec.errors import DataError
from turborec.retrieval import Index, load_index, make_index, recall_at_k

from .conftest import DIM, N_ITEMS


@dataclass(frozen=True)
class Case:
    spec: str
    min_recall: float  # recall@20 vs exact on the clustered catalog
    exact_scores: bool  # stores raw float vectors, so scores are the true inner products


CASES = [
    Case("Exact", 1.0, True),
    Case("Flat", 0.999, True),
    Case("HNSW16|efSearch=128", 0.95, True),
    Case("HNSW16,SQ8|efSearch=128", 0.9, False),
    Case("IVF16,Flat|nprobe=6", 0.95, True),
    Case("IVF16,SQ8|nprobe=6", 0.9, False),
    Case("IVF16,PQ16|nprobe=6", 0.8, False),
    Case("IVF16,PQ16x4fs,RFlat|k_factor=4,nprobe=6", 0.9, True),
]


@pytest.fixture(scope="module", params=CASES, ids=[c.spec for c in CASES])
def built(request: pytest.FixtureRequest, catalog: np.ndarray) -> tuple[Case, Index]:
    case: Case = request.param
    index = make_index(case.spec, DIM)
    index.add(catalog)
    return case, index


@pytest.fixture(scope="module")
def exact(catalog: np.ndarray) -> Index:
    index = make_index("Exact", DIM)
    index.add(catalog)
    return index


def _valid_rows(ids: np.ndarray) -> list[np.ndarray]:
    return [row[row >= 0] for row in ids]


def test_shapes_order_and_scores(built: tuple[Case, Index], catalog: np.ndarray, queries: np.ndarray) -> None:
    case, index = built
    ids, scores = index.search(queries, 10)
    assert ids.shape == scores.shape == (len(queries), 10)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert ((ids >= 0) & (ids < N_ITEMS)).all()
    assert all(len(set(row)) == 10 for row in ids)
    assert (np.diff(scores, axis=1) <= 1e-6).all(), "results must be sorted best first"
    true_scores = np.einsum("qd,qkd->qk", queries, catalog[ids])
    tolerance = 1e-3 if case.exact_scores else 0.1 * np.abs(true_scores).max()
    assert np.abs(scores - true_scores).max() <= tolerance
    assert index.spec == make_index(str(index.spec), DIM).spec


def test_recall_against_exact(built: tuple[Case, Index], exact: Index, queries: np.ndarray) -> None:
    case, index = built
    assert recall_at_k(index, exact, queries, 20) >= case.min_recall


def test_per_query_exclusions_respected_and_k_kept(
    built: tuple[Case, Index], exact: Index, queries: np.ndarray
) -> None:
    _, index = built
    true_top, _ = exact.search(queries, 15)
    seen = [row for row in true_top]  # exactly what the index would otherwise return first
    ids, scores = index.search(queries, 20, exclude=seen)
    for row, own in zip(ids, seen):
        assert (row >= 0).all() and len(set(row)) == 20
        assert not set(row) & set(own)
    assert np.isfinite(scores).all()
    padded = np.full((len(queries), 30), -1, dtype=np.int64)  # a 2-D array padded with -1 means the same
    padded[:, :15] = true_top
    np.testing.assert_array_equal(index.search(queries, 20, exclude=padded)[0], ids)


def test_shared_blocklist(built: tuple[Case, Index], queries: np.ndarray) -> None:
    _, index = built
    first, _ = index.search(queries, 10)
    blocklist = np.unique(first)  # everything any query got first
    ids, _ = index.search(queries, 10, exclude=blocklist)
    assert (ids >= 0).all()
    assert not np.isin(ids, blocklist).any()
    as_list, _ = index.search(queries, 10, exclude=[int(i) for i in blocklist])
    np.testing.assert_array_equal(as_list, ids)


def test_exclusions_leaving_fewer_than_k_return_all_that_remain(built: tuple[Case, Index], queries: np.ndarray) -> None:
    _, index = built
    remaining = np.arange(0, N_ITEMS, 400)  # 10 items survive
    blocked = np.setdiff1d(np.arange(N_ITEMS), remaining)
    ids, scores = index.search(queries[:4], 20, exclude=blocked)
    for row, row_scores in zip(ids, scores):
        assert set(row[:10]) == set(remaining)
        assert (row[10:] == -1).all() and np.isneginf(row_scores[10:]).all()


def test_k_larger_than_catalog_is_clamped(built: tuple[Case, Index], queries: np.ndarray) -> None:
    _, index = built
    ids, scores = index.search(queries[:2], N_ITEMS + 50)
    assert ids.shape == scores.shape == (2, N_ITEMS)
    for row in ids:
        assert np.array_equal(np.sort(row), np.arange(N_ITEMS)), "the whole catalog, each item once"


def test_excluded_ids_not_in_catalog_are_ignored(built: tuple[Case, Index], queries: np.ndarray) -> None:
    _, index = built
    plain = index.search(queries, 10)
    strangers = np.array([N_ITEMS, N_ITEMS + 7, 10**12, -1, -5])
    for exclude in (strangers, [strangers] * len(queries)):
        ids, scores = index.search(queries, 10, exclude=exclude)
        np.testing.assert_array_equal(ids, plain[0])
        np.testing.assert_array_equal(scores, plain[1])


def test_bad_queries_raise(built: tuple[Case, Index], queries: np.ndarray) -> None:
    _, index = built
    with pytest.raises(DataError, match="dimension 31"):
        index.search(queries[:, :31], 10)
    with pytest.raises(DataError, match="2-D"):
        index.search(queries[0], 10)
    with pytest.raises(DataError, match="rows"):
        index.search(queries, 10, exclude=[np.array([1]), np.array([2])])


def test_save_load_round_trip(built: tuple[Case, Index], queries: np.ndarray, tmp_path) -> None:
    _, index = built
    path = index.save(tmp_path / "index")
    for loaded in (load_index(path), Index.load(path)):
        assert type(loaded) is type(index)
        assert str(loaded.spec) == str(index.spec) and loaded.params == index.params
        assert loaded.ntotal == index.ntotal
        seen = [np.arange(i, i + 5) for i in range(len(queries))]
        for kwargs in ({}, {"exclude": seen}):
            a_ids, a_scores = index.search(queries, 20, **kwargs)
            b_ids, b_scores = loaded.search(queries, 20, **kwargs)
            np.testing.assert_array_equal(a_ids, b_ids)
            np.testing.assert_array_equal(a_scores, b_scores)


def test_external_ids(built: tuple[Case, Index], catalog: np.ndarray, queries: np.ndarray) -> None:
    case, index = built
    external = 1000 + 7 * np.arange(N_ITEMS)
    relabelled = make_index(case.spec, DIM)
    relabelled.add(catalog, ids=external)
    plain, _ = index.search(queries, 10)
    ids, _ = relabelled.search(queries, 10)
    np.testing.assert_array_equal(ids, external[plain])  # same build (seeded), ids mapped
    seen = [external[row[:3]] for row in plain]
    ids, _ = relabelled.search(queries, 10, exclude=seen)
    assert all(not set(row) & set(own) for row, own in zip(ids, seen))
    assert (ids >= 1000).all()
