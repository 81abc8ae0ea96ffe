"""Admission control: answer 503 at once rather than queue past the latency budget (pure logic).

The queue bound comes from the SLO, not from a fixed number: a new request is
admitted only while the *expected* time to answer it -- the rest of the batch in
flight, the batches queued ahead of it and its own batch -- stays under
``shed_at x budget``. Batch service time is learned online as
``fixed + per_item x size`` from the batches actually run, so the bound follows
the model, the tier and the machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from turborec.errors import ConfigError


class ServiceTimeModel:
    """Online linear fit of batch duration against batch size (exponentially weighted moments)."""

    def __init__(self, smoothing: float = 0.05, prior_fixed_s: float = 0.0005, prior_per_item_s: float = 0.0001):
        if not 0 < smoothing <= 1:
            raise ConfigError(f"smoothing={smoothing}: must be in (0, 1]")
        self.smoothing = smoothing
        self._n = 0
        self._s = 0.0  # E[size]
        self._d = 0.0  # E[duration]
        self._ss = 0.0  # E[size^2]
        self._sd = 0.0  # E[size*duration]
        self.fixed_s = prior_fixed_s
        self.per_item_s = prior_per_item_s

    def observe(self, size: int, duration_s: float) -> None:
        if size <= 0 or duration_s < 0 or not math.isfinite(duration_s):
            return
        a = 1.0 if self._n == 0 else max(self.smoothing, 1.0 / (self._n + 1))
        self._n += 1
        s, d = float(size), float(duration_s)
        self._s += a * (s - self._s)
        self._d += a * (d - self._d)
        self._ss += a * (s * s - self._ss)
        self._sd += a * (s * d - self._sd)
        var = self._ss - self._s * self._s
        if var > 1e-6 * max(self._ss, 1.0):
            slope = (self._sd - self._s * self._d) / var
            slope = max(slope, 0.0)
            fixed = max(self._d - slope * self._s, 0.0)
        else:  # all batches the same size: split evenly, keeping both terms positive
            slope = self._d / max(self._s, 1.0) / 2
            fixed = self._d - slope * self._s
        self.per_item_s, self.fixed_s = slope, fixed

    def predict(self, size: int) -> float:
        return self.fixed_s + self.per_item_s * max(size, 0)


@dataclass(frozen=True)
class AdmissionPolicy:
    budget_s: float = 0.010
    shed_at: float = 0.8  # admit while expected latency <= shed_at * budget
    max_batch: int = 64
    retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        if self.budget_s <= 0 or self.shed_at <= 0 or self.max_batch < 1:
            raise ConfigError(f"invalid admission policy {self}")


@dataclass(frozen=True)
class Admission:
    admitted: bool
    expected_s: float
    retry_after_s: float = 0.0


class AdmissionController:
    """Decides, for a request arriving now, whether it can be answered within the budget."""

    def __init__(self, policy: AdmissionPolicy, service_time: ServiceTimeModel | None = None) -> None:
        self.policy = policy
        self.service_time = service_time or ServiceTimeModel()

    def expected_latency(self, queue_depth: int, busy_for_s: float, wait_window_s: float = 0.0) -> float:
        """Expected seconds to answer a request that joins a queue of ``queue_depth``.

        ``busy_for_s``: time left on the batch in flight (0 when idle).
        """
        b = self.policy.max_batch
        position = queue_depth  # requests ahead of this one
        full_batches_ahead = position // b
        own_batch = position % b + 1
        st = self.service_time
        return (
            max(busy_for_s, 0.0)
            + wait_window_s
            + full_batches_ahead * st.predict(b)
            + st.predict(own_batch)
        )

    def admit(self, queue_depth: int, busy_for_s: float, wait_window_s: float = 0.0) -> Admission:
        expected = self.expected_latency(queue_depth, busy_for_s, wait_window_s)
        if expected <= self.policy.shed_at * self.policy.budget_s:
            return Admission(True, expected)
        return Admission(False, expected, self.policy.retry_after_s)

    def max_queue(self) -> int:
        """The queue bound this budget implies right now (idle model, no wait window)."""
        lo, hi = 0, 1
        while self.admit(hi, 0.0).admitted and hi < 1 << 20:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.admit(mid, 0.0).admitted:
                lo = mid
            else:
                hi = mid
        return lo + 1 if self.admit(lo, 0.0).admitted else 0
