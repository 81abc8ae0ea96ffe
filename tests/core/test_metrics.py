"""Full-ranking metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from turborec.errors import ConfigError
from turborec.metrics import evaluate_ranking, top_k_from_scores


def _csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    data, r, c = [], [], []
    for i, items in enumerate(rows):
        for j in items:
            r.append(i)
            c.append(j)
            data.append(1.0)
    return sp.csr_matrix((data, (r, c)), shape=(len(rows), n_items))


def test_hand_computed_case() -> None:
    # user 0: relevant {0, 3}; ranking 0,1,2,3 -> hit at rank 1 (and 4, outside k=2)
    # user 1: relevant {1}; ranking 3,2,1,0 -> hit at rank 3
    # user 2: no test items -> skipped
    test = _csr([[0, 3], [1], []], 4)
    scores = np.array([[4, 3, 2, 1], [1, 2, 3, 4], [9, 9, 9, 9]], dtype=np.float32)
    rep = evaluate_ranking(lambda u: scores[u], test, ks=(2, 3))
    assert rep.n_users == 2
    idcg2_u0 = 1 + 1 / math.log2(3)
    assert rep["ndcg@2"] == pytest.approx((1 / idcg2_u0 + 0) / 2)
    assert rep["recall@2"] == pytest.approx((0.5 + 0) / 2)
    assert rep["hit@2"] == pytest.approx(0.5)
    assert rep["mrr@2"] == pytest.approx(0.5)
    # at k=3 user 1 hits at rank 3: dcg 1/log2(4) = 0.5, idcg 1
    assert rep["ndcg@3"] == pytest.approx((1 / idcg2_u0 + 0.5) / 2)
    assert rep["mrr@3"] == pytest.approx((1 + 1 / 3) / 2)
    assert rep["recall@3"] == pytest.approx((0.5 + 1) / 2)


def test_excluded_items_are_never_recommended() -> None:
    test = _csr([[2]], 4)
    train = _csr([[0, 1]], 4)
    scores = np.array([[10, 9, 1, 0]], dtype=np.float32)
    rep = evaluate_ranking(lambda u: scores[u], test, exclude=train, ks=(1,))
    # with 0 and 1 masked, item 2 ranks first
    assert rep["hit@1"] == 1.0
    rep_no_mask = evaluate_ranking(lambda u: scores[u], test, ks=(1,))
    assert rep_no_mask["hit@1"] == 0.0


def test_chunking_does_not_change_results() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 50
    test = sp.random(n_users, n_items, density=0.05, random_state=1, format="csr")
    test.data[:] = 1
    scores = rng.normal(size=(n_users, n_items)).astype(np.float32)
    a = evaluate_ranking(lambda u: scores[u], test, ks=(5, 10), chunk_size=7)
    b = evaluate_ranking(lambda u: scores[u], test, ks=(5, 10), chunk_size=1000)
    for key in a.metrics:
        assert a[key] == pytest.approx(b[key])


def test_perfect_scores_give_ndcg_one() -> None:
    test = _csr([[1, 2], [0]], 5)
    dense = test.toarray()
    rep = evaluate_ranking(lambda u: dense[u] + 0.0, test, ks=(2,))
    assert rep["ndcg@2"] == pytest.approx(1.0)
    assert rep["recall@2"] == pytest.approx(1.0)


def test_topk_order_and_bad_cutoff() -> None:
    s = np.array([[0.1, 0.9, 0.5, 0.7]])
    assert top_k_from_scores(s, 3).tolist() == [[1, 3, 2]]
    with pytest.raises(ConfigError):
        evaluate_ranking(lambda u: s, _csr([[0]], 4), ks=(0,))
