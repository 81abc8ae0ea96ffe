"""SLO controller: hold the p99 budget by stepping along the degradation ladder (pure logic).

It watches the latencies of requests served since the last tier change, over a
sliding time window. When the window's p99 passes ``degrade_at x budget`` -- or
requests are being shed -- it steps one tier down (cheaper), then waits
``degrade_cooldown_s`` so the new tier's latencies fill the window before judging
again. It steps one tier back up after ``recover_hold_s`` with nothing shed and
either

- the p99 under ``recover_at x budget`` (headroom at any load: the gap between the
  two thresholds plus the hold time is the hysteresis that stops it flapping), or
- *load relief*: the p99 under ``degrade_at x budget`` and the request rate (admitted
  + shed, over ``rate_window_s``) below ``relief_at x`` the rate at which the tier
  above was last too slow. Without this a tier whose p99 at normal load sits between
  the two thresholds would never be re-entered after a spike, however far the load
  fell; and a relief step that fails records the lower rate, so the next one needs
  still less load (no flapping). While the service sits below a tier, that tier's rate
  is raised to the highest load seen (the rate window lags a sudden spike).

A step up that is undone soon after (the load is still there) doubles the hold
before the next try at that tier, up to ``max_recover_hold_s``; load relief forgets
those back-offs (the load that made them fail is gone). An empty window (no
traffic) counts as healthy, so the service climbs back to the full tier soon
after load drops: about ``levels x recover_hold_s`` plus ``rate_window_s``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from turborec.errors import ConfigError
from turborec.serving.tiers import Tier


@dataclass(frozen=True)
class SLOPolicy:
    budget_s: float = 0.010
    degrade_at: float = 0.8
    recover_at: float = 0.4
    window_s: float = 1.0
    min_samples: int = 20
    degrade_cooldown_s: float = 0.2
    recover_hold_s: float = 0.3
    max_recover_hold_s: float = 2.0  # hold doubles after each failed step up, up to this
    max_samples: int = 8192
    relief_at: float = 0.7  # load relief: rate below this fraction of the rate the tier above failed at
    rate_window_s: float = 0.5

    def __post_init__(self) -> None:
        if self.budget_s <= 0:
            raise ConfigError(f"SLO budget {self.budget_s}s: must be > 0")
        if not 0 < self.recover_at < self.degrade_at:
            raise ConfigError(f"recover_at={self.recover_at} must be in (0, degrade_at={self.degrade_at})")
        if self.window_s <= 0 or self.min_samples < 1 or self.max_samples < self.min_samples:
            raise ConfigError(f"invalid SLO window settings in {self}")
        if not 0 < self.relief_at < 1 or self.rate_window_s <= 0:
            raise ConfigError(f"relief_at={self.relief_at} must be in (0, 1), rate_window_s > 0")


_RATE_BUCKET_S = 0.05


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (q in [0, 100])."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(int(-(-q * len(sorted_values) // 100)), 1)  # ceil(q/100 * n), at least 1
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


class SLOController:
    """Feed it ``observe`` / ``observe_shed`` as requests finish and call ``update(t)`` now and then."""

    def __init__(self, policy: SLOPolicy, ladder: Sequence[Tier] = tuple(Tier), enabled: bool = True) -> None:
        if not ladder:
            raise ConfigError("the degradation ladder has no tiers")
        self.policy = policy
        self.ladder = tuple(sorted(set(ladder)))
        self.enabled = enabled
        self._level = 0
        self._samples: deque[tuple[float, float]] = deque(maxlen=policy.max_samples)
        self._last_shed: float | None = None
        self._last_change = float("-inf")
        self._healthy_since: float | None = None
        self._holds: dict[int, float] = {}  # level -> hold before stepping up into it (backs off per level)
        self._last_up: float | None = None  # when the current level was entered by a step up
        self._failed_at_rate: dict[int, float] = {}  # level -> request rate when it was last too slow
        self._rate_buckets: deque[list[float]] = deque()  # [bucket start, requests], newest last
        self._first_count: float | None = None
        self.changes: deque[tuple[float, Tier]] = deque(maxlen=1000)  # (time, new tier), newest last

    @property
    def tier(self) -> Tier:
        return self.ladder[self._level]

    @property
    def level(self) -> int:
        return self._level

    def observe(self, t: float, latency_s: float) -> None:
        self._samples.append((t, latency_s))
        self._count(t)

    def observe_shed(self, t: float) -> None:
        self._last_shed = t
        self._count(t)

    def request_rate(self, t: float) -> float:
        """Requests (admitted + shed) per second over the last ``rate_window_s``."""
        horizon = t - self.policy.rate_window_s
        buckets = self._rate_buckets
        while buckets and buckets[0][0] < horizon - _RATE_BUCKET_S:
            buckets.popleft()
        # a service that started less than a window ago has counted over less than a window
        span = min(self.policy.rate_window_s, t - self._first_count) if self._first_count is not None else 0.0
        count = sum(n for start, n in buckets if start >= horizon - _RATE_BUCKET_S)
        return count / max(span, _RATE_BUCKET_S)

    def _count(self, t: float) -> None:
        if self._first_count is None:
            self._first_count = t
        start = math.floor(t / _RATE_BUCKET_S) * _RATE_BUCKET_S
        buckets = self._rate_buckets
        if buckets and buckets[-1][0] == start:
            buckets[-1][1] += 1
        else:
            buckets.append([start, 1])
            if len(buckets) > 4 * self.policy.rate_window_s / _RATE_BUCKET_S + 8:
                buckets.popleft()

    def window_p99(self, t: float) -> float | None:
        """p99 of the latencies in the window, or None with fewer than ``min_samples``."""
        self._prune(t)
        if len(self._samples) < self.policy.min_samples:
            return None
        return percentile(sorted(lat for _, lat in self._samples), 99)

    def update(self, t: float) -> Tier:
        if not self.enabled:
            return self.tier
        p = self.policy
        if self._last_up is not None and t - self._last_up >= self._probe_s():
            self._holds.pop(self._level, None)  # the last step up held: back to the short hold
            self._last_up = None
        rate = self.request_rate(t)
        self._track_peak_load(rate)
        p99 = self.window_p99(t)
        # shed since the last tier change *and* lately: at the bottom of the ladder there is no change to
        # move _last_change past an old shed, and without the time bound one shed there would count forever
        shedding = (self._last_shed is not None and self._last_shed > self._last_change
                    and t - self._last_shed < p.window_s)
        too_slow = p99 is not None and p99 > p.degrade_at * p.budget_s
        if too_slow or shedding:
            self._healthy_since = None
            if t - self._last_change >= p.degrade_cooldown_s and self._level < len(self.ladder) - 1:
                self._failed_at_rate[self._level] = rate
                self._move(t, +1)
            return self.tier
        recently_shed = self._last_shed is not None and t - self._last_shed < p.recover_hold_s
        headroom = p99 is None or p99 < p.recover_at * p.budget_s
        relieved = self._level > 0 and self._relieved(rate)
        if relieved:
            self._holds.clear()
        if recently_shed or not (headroom or relieved):
            self._healthy_since = None
            return self.tier
        if self._healthy_since is None:
            self._healthy_since = t
        if self._level > 0 and t - self._healthy_since >= self._holds.get(self._level - 1, p.recover_hold_s):
            self._move(t, -1)
        return self.tier

    def _track_peak_load(self, rate: float) -> None:
        """While below a tier that was too slow, remember the highest load seen since: a spike is detected
        within a few updates, while the rate window still holds mostly the calm traffic before it, so the
        rate at the moment of stepping down understates the load that relief must be measured against."""
        if self._level == 0 or not self._failed_at_rate:
            return
        for level, failed in self._failed_at_rate.items():
            if level < self._level and rate > failed:
                self._failed_at_rate[level] = rate

    def _relieved(self, rate: float) -> bool:
        """The load is well under what made the tier above too slow."""
        failed = self._failed_at_rate.get(self._level - 1)
        return failed is not None and rate < self.policy.relief_at * failed

    def force(self, t: float, tier: Tier) -> None:
        """Set the tier (operators, tests); the controller goes on adjusting from there."""
        self._level = self.ladder.index(tier)
        self._reset(t)

    def set_ladder(self, t: float, ladder: Sequence[Tier]) -> None:
        """A new model with its own ladder: keep the current tier or the next cheaper one it has."""
        new = tuple(sorted(set(ladder)))
        if not new:
            raise ConfigError("the degradation ladder has no tiers")
        current = self.tier
        self.ladder = new
        self._level = next((i for i, tier in enumerate(new) if tier >= current), len(new) - 1)
        self._reset(t)

    def _move(self, t: float, step: int) -> None:
        p = self.policy
        if step > 0 and self._last_up is not None and t - self._last_up < self._probe_s():
            # stepped up into this level and it did not hold: wait longer before trying it again
            hold = self._holds.get(self._level, p.recover_hold_s)
            self._holds[self._level] = min(hold * 2, max(p.max_recover_hold_s, p.recover_hold_s))
        self._last_up = t if step < 0 else None
        self._level += step
        self._reset(t)
        self.changes.append((t, self.tier))

    def _probe_s(self) -> float:
        """How long a step up must hold to count as a success."""
        return 2 * self.policy.recover_hold_s + self.policy.degrade_cooldown_s

    def _reset(self, t: float) -> None:
        self._samples.clear()
        self._last_change = t
        self._healthy_since = None

    def _prune(self, t: float) -> None:
        horizon = t - self.policy.window_s
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()
