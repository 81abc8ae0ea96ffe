"""The SLO controller on synthetic latency streams."""

from __future__ import annotations

import itertools
import random

import pytest

from turborec.errors import ConfigError
from turborec.serving.slo import SLOController, SLOPolicy, percentile
from turborec.serving.tiers import Tier

BUDGET = 0.010
PERIOD = 0.05  # the service updates the controller every 50 ms


def drive(c: SLOController, t0: float, t1: float, rate: float, latency_of: object, seed: int = 0) -> list[Tier]:
    """Feed ``rate`` requests/s from t0 to t1 with latency_of(tier, t) and update every PERIOD; tiers seen."""
    rnd = random.Random(seed)
    seen = []
    t = t0
    next_update = t0
    while t < t1:
        t += rnd.expovariate(rate) if rate > 0 else PERIOD
        while next_update <= t and next_update < t1:
            seen.append(c.update(next_update))
            next_update += PERIOD
        if rate > 0 and t < t1:
            c.observe(t, latency_of(c.tier, t) * rnd.uniform(0.8, 1.0))  # type: ignore[operator]
    return seen


def test_percentile_nearest_rank() -> None:
    values = sorted(float(i) for i in range(1, 101))
    assert percentile(values, 99) == 99.0
    assert percentile(values, 50) == 50.0
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_steady_fast_traffic_stays_full() -> None:
    c = SLOController(SLOPolicy(budget_s=BUDGET))
    seen = drive(c, 0, 5, 1000, lambda tier, t: 0.002)
    assert set(seen) == {Tier.FULL}
    assert not c.changes


def test_slow_traffic_steps_down_one_tier_per_cooldown_to_the_bottom() -> None:
    policy = SLOPolicy(budget_s=BUDGET, degrade_cooldown_s=0.2)
    c = SLOController(policy)
    drive(c, 0, 3, 1000, lambda tier, t: 0.050)  # hopeless: every tier is slow
    assert c.tier is Tier.POPULAR
    times = [t for t, _ in c.changes]
    assert [tier for _, tier in c.changes] == [Tier.FEWER_CANDIDATES, Tier.CHEAP_RANKER, Tier.RETRIEVAL_ONLY,
                                               Tier.POPULAR]
    assert all(b - a >= policy.degrade_cooldown_s - 1e-9 for a, b in itertools.pairwise(times))


def test_settles_on_the_first_tier_that_meets_the_budget() -> None:
    cost = {Tier.FULL: 0.015, Tier.FEWER_CANDIDATES: 0.0095, Tier.CHEAP_RANKER: 0.006, Tier.RETRIEVAL_ONLY: 0.003,
            Tier.POPULAR: 0.0005}
    c = SLOController(SLOPolicy(budget_s=BUDGET))
    seen = drive(c, 0, 6, 1000, lambda tier, t: cost[tier])
    # 9.5 ms is under budget but over degrade_at (8 ms), so it goes one further; 6 ms sits in the hysteresis band
    assert c.tier is Tier.CHEAP_RANKER
    assert seen[-40:] == [Tier.CHEAP_RANKER] * 40  # and stays there: no flapping


def test_hysteresis_band_holds_the_tier() -> None:
    c = SLOController(SLOPolicy(budget_s=BUDGET, degrade_at=0.8, recover_at=0.4))
    c.force(0.0, Tier.RETRIEVAL_ONLY)
    drive(c, 0, 5, 1000, lambda tier, t: 0.006)  # between 4 ms and 8 ms: neither up nor down
    assert c.tier is Tier.RETRIEVAL_ONLY
    assert not c.changes


def test_recovers_to_full_within_five_seconds_after_load_drops() -> None:
    c = SLOController(SLOPolicy(budget_s=BUDGET))
    heavy = {Tier.FULL: 0.05, Tier.FEWER_CANDIDATES: 0.04, Tier.CHEAP_RANKER: 0.03, Tier.RETRIEVAL_ONLY: 0.02,
             Tier.POPULAR: 0.001}
    drive(c, 0, 4, 3000, lambda tier, t: heavy[tier])
    assert c.tier is Tier.POPULAR
    seen = drive(c, 4, 10, 300, lambda tier, t: 0.002)  # load dropped: every tier is fast again
    back = next(i for i, tier in enumerate(seen) if tier is Tier.FULL) * PERIOD
    assert back <= 5.0
    assert c.tier is Tier.FULL


def test_an_idle_service_counts_as_healthy() -> None:
    c = SLOController(SLOPolicy(budget_s=BUDGET))
    c.force(0.0, Tier.POPULAR)
    for i in range(1, 200):
        c.update(i * PERIOD)
    assert c.tier is Tier.FULL


def test_shedding_steps_down_and_blocks_recovery() -> None:
    policy = SLOPolicy(budget_s=BUDGET, recover_hold_s=0.5)
    c = SLOController(policy)
    c.observe_shed(0.01)
    assert c.update(0.25) is Tier.FEWER_CANDIDATES
    for i in range(6, 40):  # latencies are fine, but requests keep being shed
        t = i * PERIOD
        c.observe_shed(t)
        c.observe(t, 0.001)
        c.update(t)
    assert c.tier > Tier.FEWER_CANDIDATES
    level = c.tier
    for i in range(40, 45):  # sheds stop: the hold must pass before it climbs
        c.update(i * PERIOD)
    assert c.tier is level


def test_a_shed_at_the_bottom_of_the_ladder_does_not_pin_the_service_there() -> None:
    # a storm sheds requests after the controller has reached the cheapest tier (no further step down
    # resets its clock); once the storm has passed and answers are fast it must climb back to full
    ladder = (Tier.FULL, Tier.FEWER_CANDIDATES, Tier.POPULAR)
    c = SLOController(SLOPolicy(budget_s=BUDGET), ladder)
    drive(c, 0, 1, 1000, lambda tier, t: 0.002)
    drive(c, 1, 3, 5000, lambda tier, t: 0.05 if tier is not Tier.POPULAR else 0.001, seed=1)
    assert c.tier is Tier.POPULAR
    c.observe_shed(3.0)  # the storm's last shed, after the last tier change
    seen = drive(c, 3.0, 9.0, 1000, lambda tier, t: 0.002, seed=2)
    back = next(i for i, tier in enumerate(seen) if tier is Tier.FULL) * PERIOD
    assert back <= 5.0
    assert seen[-20:] == [Tier.FULL] * 20


def test_failed_step_up_doubles_the_hold() -> None:
    policy = SLOPolicy(budget_s=BUDGET, recover_hold_s=0.5, max_recover_hold_s=2.0)
    cost = {Tier.FULL: 0.05, Tier.FEWER_CANDIDATES: 0.001, Tier.CHEAP_RANKER: 0.001, Tier.RETRIEVAL_ONLY: 0.001,
            Tier.POPULAR: 0.001}
    c = SLOController(policy)
    drive(c, 0, 20, 1000, lambda tier, t: cost[tier])
    ups = [t for (t, tier) in c.changes if tier is Tier.FULL]
    gaps = [b - a for a, b in itertools.pairwise(ups)]
    assert len(ups) >= 3
    assert gaps[-1] > gaps[0]  # probing the full tier gets rarer
    assert len(c.changes) < 40  # rather than flapping every ~0.7 s


def test_too_few_samples_decide_nothing() -> None:
    c = SLOController(SLOPolicy(budget_s=BUDGET, min_samples=20))
    for i in range(10):
        c.observe(i * 0.01, 1.0)
    assert c.window_p99(0.1) is None
    assert c.update(0.3) is Tier.FULL


def test_disabled_controller_never_moves() -> None:
    c = SLOController(SLOPolicy(budget_s=BUDGET), enabled=False)
    drive(c, 0, 2, 1000, lambda tier, t: 1.0)
    assert c.tier is Tier.FULL


def test_ladder_follows_the_model() -> None:
    ladder = (Tier.FULL, Tier.FEWER_CANDIDATES, Tier.POPULAR)
    c = SLOController(SLOPolicy(budget_s=BUDGET), ladder)
    drive(c, 0, 2, 1000, lambda tier, t: 0.05)
    assert c.tier is Tier.POPULAR and [tier for _, tier in c.changes] == [Tier.FEWER_CANDIDATES, Tier.POPULAR]
    c.force(3.0, Tier.FEWER_CANDIDATES)
    c.set_ladder(3.0, tuple(Tier))  # a reload brings a model with every tier: same tier kept
    assert c.tier is Tier.FEWER_CANDIDATES
    c.force(3.0, Tier.CHEAP_RANKER)
    c.set_ladder(3.0, ladder)  # back to a model without it: the next cheaper one
    assert c.tier is Tier.POPULAR


def test_bad_policy_is_refused() -> None:
    with pytest.raises(ConfigError, match="recover_at"):
        SLOPolicy(degrade_at=0.5, recover_at=0.6)


def _storm_then_calm(c: SLOController, band_ms: float) -> list[Tier]:
    """3,000 req/s for 4 s where every tier but POPULAR is far too slow, then 500 req/s where every tier's p99
    sits at ``band_ms`` (in the hysteresis band: not fast enough for the headroom rule alone)."""
    heavy = {Tier.FULL: 0.05, Tier.FEWER_CANDIDATES: 0.04, Tier.CHEAP_RANKER: 0.03, Tier.RETRIEVAL_ONLY: 0.02,
             Tier.POPULAR: 0.001}
    drive(c, 0, 4, 3000, lambda tier, t: heavy[tier])
    assert c.tier is Tier.POPULAR
    return drive(c, 4, 12, 500, lambda tier, t: band_ms / 1000, seed=1)


def test_load_relief_recovers_a_tier_whose_normal_p99_is_in_the_hysteresis_band() -> None:
    c = SLOController(SLOPolicy(budget_s=BUDGET))
    seen = _storm_then_calm(c, band_ms=6.0)  # between recover_at (4 ms) and degrade_at (8 ms)
    back = next(i for i, tier in enumerate(seen) if tier is Tier.FULL) * PERIOD
    assert back <= 5.0
    assert seen[-40:] == [Tier.FULL] * 40  # and stays there
    # without load relief (its threshold made unreachable) the same stream never climbs out
    stuck = SLOController(SLOPolicy(budget_s=BUDGET, relief_at=1e-9))
    assert Tier.FULL not in _storm_then_calm(stuck, band_ms=6.0)


def test_relief_after_a_spike_that_follows_calm_traffic() -> None:
    # calm 1,000 req/s at 6 ms, then a storm at 3,000: the full tier is judged too slow while the rate window
    # still holds mostly the calm traffic (about 1,200 req/s then), so the rate recorded then understates the
    # storm; relief must still come when the load falls back to 1,000
    heavy = {Tier.FULL: 0.05, Tier.FEWER_CANDIDATES: 0.04, Tier.CHEAP_RANKER: 0.03, Tier.RETRIEVAL_ONLY: 0.02,
             Tier.POPULAR: 0.001}
    c = SLOController(SLOPolicy(budget_s=BUDGET))
    assert set(drive(c, 0, 3, 1000, lambda tier, t: 0.006)) == {Tier.FULL}
    drive(c, 3, 9, 3000, lambda tier, t: heavy[tier], seed=1)
    assert c.tier is not Tier.FULL
    seen = drive(c, 9, 17, 1000, lambda tier, t: 0.006, seed=2)
    back = next(i for i, tier in enumerate(seen) if tier is Tier.FULL) * PERIOD
    assert back <= 5.0
    assert seen[-40:] == [Tier.FULL] * 40


def test_no_relief_while_the_load_that_failed_is_still_there() -> None:
    # the full tier is too slow at 1,000 req/s; the cheaper one sits in the band: it must not probe up on relief
    cost = {Tier.FULL: 0.012, Tier.FEWER_CANDIDATES: 0.006}
    c = SLOController(SLOPolicy(budget_s=BUDGET), (Tier.FULL, Tier.FEWER_CANDIDATES, Tier.POPULAR))
    seen = drive(c, 0, 10, 1000, lambda tier, t: cost.get(tier, 0.001))
    assert seen[-100:] == [Tier.FEWER_CANDIDATES] * 100
    assert len(c.changes) == 1
    # the load halves: now the full tier is tried again (and, at this load, kept)
    seen = drive(c, 10, 14, 400, lambda tier, t: 0.006, seed=2)
    assert c.tier is Tier.FULL and Tier.FULL in seen[: int(2.0 / PERIOD)]


def test_a_failed_relief_step_needs_still_less_load_next_time() -> None:
    cost = {Tier.FULL: 0.012, Tier.FEWER_CANDIDATES: 0.006}
    ladder = (Tier.FULL, Tier.FEWER_CANDIDATES, Tier.POPULAR)
    c = SLOController(SLOPolicy(budget_s=BUDGET), ladder)
    drive(c, 0, 3, 1000, lambda tier, t: cost.get(tier, 0.001))
    drive(c, 3, 13, 600, lambda tier, t: cost.get(tier, 0.001), seed=3)  # relieved, but FULL still too slow
    ups = [t for t, tier in c.changes if tier is Tier.FULL]
    assert len(ups) == 1  # one try at 600 req/s; it failed and recorded 600, so no retry at the same load
    assert c.tier is Tier.FEWER_CANDIDATES


def test_request_rate_counts_admitted_and_shed() -> None:
    c = SLOController(SLOPolicy(budget_s=BUDGET, rate_window_s=0.5))
    for i in range(500):
        t = i * 0.002  # 500 req/s for 1 s, every other one shed
        (c.observe_shed if i % 2 else lambda t: c.observe(t, 0.001))(t)
    assert c.request_rate(1.0) == pytest.approx(500, rel=0.15)
    assert c.request_rate(3.0) == 0.0
