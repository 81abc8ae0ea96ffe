"""The early-stopping rule (a smoothed validation curve with a relative tolerance) and the two-tower's
batch growth on large data (at most ``max_steps_per_epoch`` steps an epoch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from turborec.data import apply_protocol, synthetic
from turborec.errors import ConfigError
from turborec.train import TwoTowerRecommender
from turborec.train.estimators import scaled_batch
from turborec.train.trainer import TrainConfig, fit_loop, stale_validations


def _stops_at(scores: list[float], patience: int, window: int = 1, tolerance: float = 0.0) -> int | None:
    """The validation (0-based) after which a fit with this rule stops, None when it runs through."""
    for i in range(len(scores)):
        if stale_validations(scores[: i + 1], window, tolerance) >= patience:
            return i
    return None


def test_plain_rule_counts_validations_since_the_best() -> None:
    scores = [0.1, 0.3, 0.2, 0.25, 0.3, 0.29]  # a tie is no progress
    assert [stale_validations(scores[: i + 1]) for i in range(len(scores))] == [0, 0, 1, 2, 3, 4]
    assert stale_validations([]) == 0


def test_a_still_rising_curve_never_stops() -> None:
    rising = [0.2 * (1 - np.exp(-i / 40)) + 0.05 for i in range(120)]  # slowing, but +0.5% a step at the end
    assert _stops_at(rising, patience=5, window=5, tolerance=0.002) is None
    assert _stops_at(rising, patience=5) is None


def test_a_creeping_plateau_stops_within_the_tolerance() -> None:
    # rises 10% a validation to 0.2 at index 10, then creeps +0.02% a validation: a plateau at 0.1% tolerance
    scores = [0.2 * 1.1 ** (i - 10) for i in range(11)] + [0.2 * 1.0002 ** i for i in range(1, 60)]
    stop = _stops_at(scores, patience=8, tolerance=0.001)
    # small gains add up: the bar is passed every ~5 validations, so patience 8 is never reached ...
    assert stop is None
    # ... but not within a tolerance of 1%: the last counted progress is index 10, the stop 8 later
    assert _stops_at(scores, patience=8, tolerance=0.01) == 18
    assert _stops_at(scores, patience=8) is None  # the plain rule waits for ever on a creep


def test_one_lucky_validation_does_not_set_the_bar_of_a_smoothed_rule() -> None:
    # a slowly rising curve (+0.1% a validation) with one noise spike of +4% at index 10
    scores = [0.2 * 1.001 ** i for i in range(40)]
    scores[10] *= 1.04
    assert _stops_at(scores, patience=15) == 25  # the plain rule: 15 validations unable to beat the spike
    assert _stops_at(scores, patience=15, window=5) is None  # the mean of 5 keeps rising through it


@pytest.mark.parametrize(("window", "epochs"), [(1, 8), (3, 10)])
def test_fit_loop_stops_where_the_rule_says_and_restores_the_best_score(window: int, epochs: int) -> None:
    net = torch.nn.Linear(2, 1)
    scores = iter([0.1, 0.2, 0.3, 0.5, 0.31, 0.32, 0.33, 0.34, 0.35, 0.36, 0.37, 0.38])

    def loss(batch: torch.Tensor) -> torch.Tensor:
        return (net(batch) ** 2).mean()

    config = TrainConfig(epochs=12, patience=4, stop_window=window, progress=False)
    history = fit_loop(net, loss, lambda e: [torch.ones(4, 2)], config, lambda: next(scores))
    # plain: best at 3, four validations without a better one -> 8 epochs; means of 3: .1 .15 .2 .333 .37 .377
    # (best at 5) then .32 .33 .34 .35 -> 10 epochs
    assert len(history.losses) == epochs
    assert history.best_score == 0.5 and history.best_epoch == 3  # the weights kept: the best single score


def test_stopping_options_are_checked() -> None:
    with pytest.raises(ConfigError):
        TrainConfig(stop_window=0)
    with pytest.raises(ConfigError):
        TrainConfig(stop_tolerance=-0.1)
    with pytest.raises(ConfigError):
        TrainConfig(max_steps_per_epoch=-1)


def test_scaled_batch_bounds_the_steps_of_an_epoch() -> None:
    config = TrainConfig(batch_size=4096, max_steps_per_epoch=25)
    assert scaled_batch(config, 80_000) is config  # small data: the batch as set
    assert scaled_batch(config, 805_348).batch_size == 32_214  # ceil(805,348 / 25)
    assert scaled_batch(TrainConfig(batch_size=4096), 805_348).batch_size == 4096  # 0: no limit


def test_two_tower_takes_at_most_max_steps_per_epoch() -> None:
    split = apply_protocol("recbole", synthetic(n_users=300, n_items=120, n_interactions=9_000, seed=5), seed=1)
    steps: list[int] = []
    model = TwoTowerRecommender(dim=16, hidden=(32,), epochs=2, batch_size=256, max_steps_per_epoch=4, seed=0,
                                progress=False)

    def count_step(batch: object) -> torch.Tensor:  # the auxiliary loss runs once a step
        steps.append(1)
        return torch.zeros(())

    model.aux_loss = count_step
    model.fit(split.train, split.valid)
    interactions = len(np.unique(split.train.user.astype(np.int64) * split.train.n_items + split.train.item))
    assert model.train_config.batch_size == -(-interactions // 4) > 256
    # whole users a step: an epoch may end with one short step past the bound
    assert 2 * 4 <= len(steps) <= 2 * 5


def test_a_batch_size_asked_for_is_kept_unless_the_step_bound_is_asked_for_too() -> None:
    assert TwoTowerRecommender().train_config.max_steps_per_epoch == 25  # the default grows large data's steps
    assert TwoTowerRecommender(batch_size=512).train_config.max_steps_per_epoch == 0
    assert TwoTowerRecommender(batch_size=512, max_steps_per_epoch=4).train_config.max_steps_per_epoch == 4
