"""Micro-batching as a small pure state machine (no asyncio, no model, no clock).

The driver feeds it three kinds of events with explicit times and does what the
answer says:

- ``arrive(request_id, t)``: a request is ready to be served;
- ``tick(t)``: a wake-up time it asked for has come;
- ``batch_done(t)``: one dispatched batch finished.

Each returns a :class:`Decision`: batches to dispatch *now* (request ids, oldest
first) and, if requests remain waiting, the time to be woken at (``wake_at``).

Policy: at most ``max_in_flight`` batches run at once (one model call at a time
by default, the fastest on a CPU). While a batch runs, arrivals accumulate and
go together as the next batch, so batches grow with load on their own. When a
slot is free the oldest request waits at most ``wait_window`` before dispatch,
and that window adapts to load: zero when the observed gap between arrivals is
longer than ``max_wait`` (nobody else is expected in time, so waiting would only
add latency), otherwise the time the current arrival rate needs to fill the
batch, capped by ``max_wait``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from turborec.errors import ConfigError


@dataclass(frozen=True)
class BatchPolicy:
    max_batch: int = 64
    max_wait_s: float = 0.001
    max_in_flight: int = 1
    adaptive_wait: bool = True
    gap_smoothing: float = 0.1  # EWMA weight of the newest inter-arrival gap

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ConfigError(f"max_batch={self.max_batch}: must be >= 1")
        if self.max_wait_s < 0:
            raise ConfigError(f"max_wait_s={self.max_wait_s}: must be >= 0")
        if self.max_in_flight < 1:
            raise ConfigError(f"max_in_flight={self.max_in_flight}: must be >= 1")
        if not 0 < self.gap_smoothing <= 1:
            raise ConfigError(f"gap_smoothing={self.gap_smoothing}: must be in (0, 1]")


@dataclass(frozen=True)
class Decision:
    """What the driver must do now: dispatch ``batches`` and, if set, wake the machine at ``wake_at``."""

    batches: tuple[tuple[int, ...], ...] = ()
    wake_at: float | None = None


class MicroBatcher:
    """Pending requests, batches in flight and the arrival-rate estimate; see the module docstring."""

    def __init__(self, policy: BatchPolicy | None = None) -> None:
        self.policy = policy or BatchPolicy()
        self._pending: deque[tuple[int, float]] = deque()
        self._in_flight = 0
        self._last_arrival: float | None = None
        self._gap: float | None = None

    # ---------------------------------------------------------------- state
    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def mean_gap_s(self) -> float | None:
        """Smoothed time between arrivals (None before two arrivals)."""
        return self._gap

    def wait_window(self) -> float:
        """How long the oldest request may wait for company once a slot is free."""
        p = self.policy
        if not p.adaptive_wait:
            return p.max_wait_s
        if self._gap is None or self._gap >= p.max_wait_s:
            return 0.0
        missing = max(p.max_batch - len(self._pending), 0)
        return min(p.max_wait_s, self._gap * missing)

    # --------------------------------------------------------------- events
    def arrive(self, request_id: int, t: float, decide: bool = True) -> Decision:
        """A request is ready. ``decide=False`` only records it: a driver that sees several arrivals at
        once (one event-loop iteration) records them all, then calls ``tick`` once, so they can share a
        batch instead of the first one leaving alone."""
        if self._last_arrival is not None:
            gap = max(t - self._last_arrival, 0.0)
            a = self.policy.gap_smoothing
            self._gap = gap if self._gap is None else (1 - a) * self._gap + a * gap
        self._last_arrival = t
        self._pending.append((request_id, t))
        return self._decide(t) if decide else Decision()

    def tick(self, t: float) -> Decision:
        return self._decide(t)

    def batch_done(self, t: float) -> Decision:
        if self._in_flight <= 0:
            raise RuntimeError("batch_done without a batch in flight")
        self._in_flight -= 1
        return self._decide(t)

    def drop(self, request_id: int) -> bool:
        """Forget a pending request (its caller went away); True if it was pending."""
        for i, (rid, _) in enumerate(self._pending):
            if rid == request_id:
                del self._pending[i]
                return True
        return False

    # -------------------------------------------------------------- policy
    def _decide(self, t: float) -> Decision:
        p = self.policy
        batches: list[tuple[int, ...]] = []
        while self._pending and self._in_flight < p.max_in_flight:
            oldest = self._pending[0][1]
            if len(self._pending) < p.max_batch and t < oldest + self.wait_window():
                break
            n = min(len(self._pending), p.max_batch)
            batches.append(tuple(self._pending.popleft()[0] for _ in range(n)))
            self._in_flight += 1
        wake_at = None
        if self._pending and self._in_flight < p.max_in_flight:
            wake_at = self._pending[0][1] + self.wait_window()
        return Decision(tuple(batches), wake_at)
