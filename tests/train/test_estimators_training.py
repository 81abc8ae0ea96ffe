"""Training details of the gradient estimators: DNS negatives for BPR, weight averaging for the two-tower."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from turborec.data import apply_protocol, load_movielens, synthetic
from turborec.models.mf import MFConfig, MFNet
from turborec.train import BPRRecommender, PopularityRecommender, TwoTowerRecommender, load
from turborec.train.estimators import _hardest, _WeightAverage


def _mf_with_items(item_vectors: list[list[float]], user_vector: list[float]) -> MFNet:
    net = MFNet(MFConfig(dim=len(user_vector), item_bias=False), {"n_users": 1, "n_items": len(item_vectors)})
    with torch.no_grad():
        net.item_emb.weight.copy_(torch.tensor(item_vectors))
        net.user_emb.weight.copy_(torch.tensor([user_vector]))
    return net


def test_dns_picks_the_highest_scoring_unobserved_candidate() -> None:
    # item scores for the user are 0, 1, 2, 3
    net = _mf_with_items([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]], [1.0, 0.0])
    pu = net.user_emb(torch.tensor([0]))
    cand = torch.tensor([[[0, 2, 1], [3, 1, 0]]])  # [B=1, negatives=2, candidates=3]
    none_known = torch.zeros_like(cand, dtype=torch.bool)
    assert _hardest(net, pu, cand, none_known).tolist() == [[2, 3]]
    # item 3 is one of the user's training items: the next best candidate wins instead
    known = cand == 3
    assert _hardest(net, pu, cand, known).tolist() == [[2, 1]]
    # one candidate: plain uniform sampling, whatever the scores
    assert _hardest(net, pu, cand[..., :1], none_known[..., :1]).tolist() == [[0, 3]]


def test_weight_average_tracks_the_ema_and_restores_raw_weights() -> None:
    net = torch.nn.Linear(3, 2)
    start = [p.detach().clone() for p in net.parameters()]
    average = _WeightAverage(net, decay=0.5)
    expected = [s.clone() for s in start]
    for step in range(20):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
        average.update()
        decay = min(0.5, (1 + step) / (10 + step))
        expected = [e * decay + p.detach() * (1 - decay) for e, p in zip(expected, net.parameters(), strict=True)]
    raw = [p.detach().clone() for p in net.parameters()]
    score = average.wrap(lambda: float(net.weight.detach().sum()))
    assert score() == pytest.approx(float(expected[0].sum()), rel=1e-5)
    for p, e in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e)  # the average is in the net while validating
    average.swap_out()
    for p, r in zip(net.parameters(), raw, strict=True):
        torch.testing.assert_close(p.detach(), r)  # and the raw weights come back for training
    assert not torch.allclose(expected[0], raw[0])


def test_new_training_options_survive_the_artifact(tmp_path: Path) -> None:
    split = apply_protocol("recbole", synthetic(n_users=300, n_items=120, n_interactions=6_000, seed=5), seed=1)
    bpr = BPRRecommender(negative_candidates=3, dim=16, epochs=2, progress=False).fit(split.train)
    tower = TwoTowerRecommender(weight_average=0.9, dim=16, epochs=2, progress=False).fit(split.train, split.valid)
    for model in (bpr, tower):
        again = load(model.save(tmp_path / model.name))
        assert again.config == model.config
        users = list(split.train.users.ids[:10])
        np.testing.assert_array_equal(model.recommend(users, N=5)[0], again.recommend(users, N=5)[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bpr", "two-tower"])
def test_defaults_reach_twice_popularity_on_movielens(ml_small_dir: Path, name: str) -> None:
    """Issue #2's bar on one seed of benchmarks/retrieval_accuracy.py (recbole protocol, test split)."""
    split = apply_protocol("recbole", load_movielens(ml_small_dir), seed=2020)
    pop = PopularityRecommender().fit(split.train).evaluate(split.test, exclude=[split.valid])["ndcg@10"]
    cls = BPRRecommender if name == "bpr" else TwoTowerRecommender
    model = cls(progress=False, seed=2020).fit(split.train, split.valid)
    ndcg = model.evaluate(split.test, exclude=[split.valid])["ndcg@10"]
    assert ndcg >= 2 * pop, (ndcg, pop)


@pytest.mark.slow
def test_dns_beats_uniform_negatives_on_movielens_validation(ml_small_dir: Path) -> None:
    split = apply_protocol("recbole", load_movielens(ml_small_dir), seed=2020)
    uniform, dns = (
        BPRRecommender(negative_candidates=c, progress=False, seed=2020).fit(split.train, split.valid).history.best_score
        for c in (1, 4)
    )
    assert dns > uniform + 0.005, (dns, uniform)
