"""The two-tower's per-user objective, EASE's validated l2, and the thread-count rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import turborec
from turborec._util.threads import default_threads, pick_threads
from turborec.data import apply_protocol, synthetic
from turborec.errors import ConfigError
from turborec.models.ease import EASEConfig, EASENet
from turborec.train import EASERecommender, TwoTowerRecommender
from turborec.train.estimators import _unique_histories, _user_batch
from turborec.train.history import Histories


def _histories(rows: list[list[int]], n_items: int) -> Histories:
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    return Histories(offsets, np.array([i for r in rows for i in r], dtype=np.int64), n_items)


def test_unique_histories_keep_each_item_once_at_its_last_time() -> None:
    offsets, items = _unique_histories(_histories([[3, 1, 3, 2], [], [5, 5]], 6))
    assert offsets.tolist() == [0, 3, 3, 4]
    assert items.tolist() == [1, 3, 2, 5]


def test_user_batch_splits_every_item_into_visible_or_hidden() -> None:
    rows = [list(range(0, 40)), list(range(40, 45)), [45]]
    offsets, items = _unique_histories(_histories(rows, 50))
    users = np.array([0, 1, 2])
    batch = _user_batch(users, offsets, items, holdout=0.4, width=8, gen=np.random.default_rng(0), dev=torch.device("cpu"))
    for r, row in enumerate(rows):
        hidden = set(batch.target_items[batch.target_rows == r].tolist())
        seen = set(batch.seen_items[batch.seen_rows == r].tolist())
        assert hidden | seen == set(row) and not hidden & seen  # a partition: no target leaks into the input
        window = [i for i in batch.history[r].tolist() if i >= 0]
        assert window == [i for i in row if i in seen][-8:]  # the most recent visible ones, oldest first
    assert batch.history.shape[1] <= 8
    assert 0.25 < len(batch.target_items) / 46 < 0.55


def test_user_objective_learns_and_is_reproducible() -> None:
    split = apply_protocol("recbole", synthetic(n_users=400, n_items=150, n_interactions=12_000, seed=4), seed=1)
    a, b = (TwoTowerRecommender(objective="users", dim=16, epochs=4, seed=3, progress=False).fit(split.train, split.valid) for _ in range(2))
    assert a.history.scores == b.history.scores
    assert a.history.scores[-1] > a.history.scores[0]


def test_two_tower_rejects_an_unknown_objective() -> None:
    with pytest.raises(ConfigError):
        TwoTowerRecommender(objective="triplets")
    with pytest.raises(ConfigError):
        TwoTowerRecommender(holdout=1.0)
    with pytest.raises(ConfigError, match="pooling"):
        TwoTowerRecommender(pooling="max")


def test_sqrt_pooling_trains_serves_and_round_trips(tmp_path: Path) -> None:
    """``pooling="sqrt"``: the user tower reads sum / sqrt(count), in training (the bag path) and when
    scoring (the gather path); the saved model keeps it."""
    split = apply_protocol("recbole", synthetic(n_users=200, n_items=80, n_interactions=5_000, seed=4), seed=1)
    model = TwoTowerRecommender(pooling="sqrt", dim=8, hidden=(16,), epochs=2, seed=0, progress=False)
    model.fit(split.train, split.valid)
    tower = model.fitted_net.user_tower  # type: ignore[union-attr]
    users = np.arange(12)
    hist = torch.from_numpy(model.user_histories(users))
    with torch.no_grad():
        n = (hist >= 0).sum(1, keepdim=True).clamp_min(1).float()
        pooled = (tower.item_emb(hist.clamp_min(0)) * (hist >= 0).unsqueeze(-1)).sum(1) / n.sqrt()
        known = tower.user_emb(torch.from_numpy(users))
        expect = tower.mlp(torch.cat([pooled, known], dim=1))
        np.testing.assert_allclose(tower(torch.from_numpy(users), hist).numpy(), expect.numpy(), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "m")
    back = turborec.load(tmp_path / "m")
    assert back.config.pooling == "sqrt"
    np.testing.assert_array_equal(back.score_users(users), model.score_users(users))


def test_ease_picks_its_l2_on_validation() -> None:
    split = apply_protocol("recbole", synthetic(n_users=500, n_items=120, n_interactions=15_000, seed=2), seed=1)
    grid = (1, 30, 300, 3000)
    model = EASERecommender(l2_grid=grid).fit(split.train, split.valid)
    scores = {float(k): v for k, v in model.metrics["l2_validation_ndcg@10"].items()}
    assert set(scores) == {float(g) for g in grid}
    assert model.config.l2 == max(scores, key=scores.__getitem__)
    fixed = EASERecommender(l2=model.config.l2, l2_grid=()).fit(split.train, split.valid)
    np.testing.assert_allclose(fixed.item_vectors(), model.item_vectors(), rtol=1e-5, atol=1e-6)
    assert EASERecommender(l2=7.0).fit(split.train).config.l2 == 7.0  # nothing to validate on: l2 as given


def test_thread_rule() -> None:
    assert default_threads({}, cores=2, load=3.7) == 1  # a busy box: one thread, not two fighting
    assert default_threads({}, cores=16, load=0.2) == 16
    assert default_threads({}, cores=16, load=5.4) == 11
    assert default_threads({"OMP_NUM_THREADS": "3"}, cores=16, load=0.0) == 3
    assert default_threads({"OMP_NUM_THREADS": "x"}, cores=4, load=0.0) == 4
    assert pick_threads(2) == 2
    with pytest.raises(ConfigError):
        pick_threads(0)


def test_threads_flag_sets_torch_and_rejects_zero() -> None:
    import argparse

    from turborec.cli.common import add_threads_argument, apply_threads

    parser = argparse.ArgumentParser()
    add_threads_argument(parser)
    before = torch.get_num_threads()
    try:
        assert apply_threads(parser.parse_args(["--threads", "1"])) == 1 and torch.get_num_threads() == 1
        assert apply_threads(parser.parse_args([])) >= 1  # the default rule
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit):
        parser.parse_args(["--threads", "0"])



def test_ease_closed_form_is_the_published_formula() -> None:
    # B = I - P diag(1/diag(P)), P = (G + l2 I)^-1, zero diagonal: computed here with numpy, independently of the
    # net's (torch) inverse, on a co-occurrence gram matrix
    rng = np.random.default_rng(0)
    x = (rng.random((300, 40)) < 0.1).astype(np.float64)
    gram = x.T @ x
    net = EASENet(EASEConfig(l2=25.0), {"n_users": 300, "n_items": 40})
    net.fit_closed_form(gram)
    p = np.linalg.inv(gram + 25.0 * np.eye(40))
    expected = np.eye(40) - p / np.diag(p)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(net.B.numpy(), expected, rtol=1e-4, atol=1e-6)
    net.fit_closed_form(gram, l2=1.0)  # the l2 argument overrides the config's
    p1 = np.linalg.inv(gram + np.eye(40))
    assert np.allclose(net.B.numpy()[0, 1], -p1[0, 1] / p1[1, 1], rtol=1e-4)
