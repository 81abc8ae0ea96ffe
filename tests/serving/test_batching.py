"""The micro-batching state machine, driven by explicit events and times (no asyncio, no model)."""

from __future__ import annotations

import heapq

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turborec.errors import ConfigError
from turborec.serving.batching import BatchPolicy, Decision, MicroBatcher


def test_idle_low_load_dispatches_at_once() -> None:
    b = MicroBatcher(BatchPolicy(max_batch=8, max_wait_s=0.002))
    d = b.arrive(1, 0.0)
    assert d.batches == ((1,),) and d.wake_at is None
    assert b.in_flight == 1 and b.queue_depth == 0


def test_arrivals_during_a_batch_go_together_when_it_is_done() -> None:
    b = MicroBatcher(BatchPolicy(max_batch=8, max_wait_s=0.0))
    assert b.arrive(1, 0.0).batches == ((1,),)
    for rid in (2, 3, 4):
        assert b.arrive(rid, 0.0001 * rid) == Decision()  # slot busy: they wait, no timer needed
    assert b.queue_depth == 3
    assert b.batch_done(0.001).batches == ((2, 3, 4),)
    assert b.queue_depth == 0 and b.in_flight == 1


def test_batches_never_exceed_max_batch_and_keep_fifo_order() -> None:
    b = MicroBatcher(BatchPolicy(max_batch=3, max_wait_s=0.0))
    b.arrive(0, 0.0)
    for rid in range(1, 8):
        b.arrive(rid, 0.0)
    assert b.batch_done(0.01).batches == ((1, 2, 3),)
    assert b.batch_done(0.02).batches == ((4, 5, 6),)
    assert b.batch_done(0.03).batches == ((7,),)
    assert b.batch_done(0.04) == Decision()
    assert b.in_flight == 0


def test_several_slots_dispatch_several_batches() -> None:
    b = MicroBatcher(BatchPolicy(max_batch=2, max_wait_s=0.0, max_in_flight=2))
    b.arrive(0, 0.0)
    b.arrive(1, 0.0)  # second slot takes it immediately
    assert b.in_flight == 2
    for rid in range(2, 7):
        b.arrive(rid, 0.001)
    d = b.batch_done(0.002)
    assert d.batches == ((2, 3),) and b.in_flight == 2


def test_fixed_wait_window_waits_then_dispatches_on_tick() -> None:
    b = MicroBatcher(BatchPolicy(max_batch=4, max_wait_s=0.002, adaptive_wait=False))
    d = b.arrive(1, 1.0)
    assert d.batches == () and d.wake_at == pytest.approx(1.002)
    assert b.arrive(2, 1.001).batches == ()
    assert b.tick(1.0015).batches == ()  # early tick: still waiting
    assert b.tick(1.002).batches == ((1, 2),)


def test_full_batch_goes_without_waiting_for_the_window() -> None:
    b = MicroBatcher(BatchPolicy(max_batch=3, max_wait_s=1.0, adaptive_wait=False))
    b.arrive(1, 0.0)
    b.arrive(2, 0.0)
    assert b.arrive(3, 0.0).batches == ((1, 2, 3),)


def test_adaptive_window_is_zero_at_low_rate_and_opens_at_high_rate() -> None:
    b = MicroBatcher(BatchPolicy(max_batch=16, max_wait_s=0.001, gap_smoothing=0.5))
    # one request every 10 ms: nobody else would come within 1 ms, so no waiting
    t = 0.0
    for rid in range(5):
        d = b.arrive(rid, t)
        assert d.batches == ((rid,),)
        b.batch_done(t + 0.0005)
        t += 0.010
    assert b.wait_window() == 0.0
    # one every 0.1 ms: waiting up to 1 ms collects company
    for rid in range(5, 30):
        t += 0.0001
        b.arrive(rid, t)
        if b.in_flight:
            b.batch_done(t)
    assert 0 < b.wait_window() <= 0.001


def test_drop_forgets_a_waiting_request() -> None:
    b = MicroBatcher(BatchPolicy(max_batch=8, max_wait_s=0.0))
    b.arrive(1, 0.0)
    b.arrive(2, 0.0)
    b.arrive(3, 0.0)
    assert b.drop(2) and not b.drop(2)
    assert b.batch_done(0.001).batches == ((3,),)


def test_batch_done_without_batch_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        MicroBatcher().batch_done(0.0)


def test_bad_policy_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_batch"):
        BatchPolicy(max_batch=0)


def simulate(rate: float, fixed_s: float, per_item_s: float, policy: BatchPolicy, n: int = 3000) -> dict[str, float]:
    """Discrete-event run: Poisson arrivals, batch service time fixed + per_item*size, timers honoured."""
    import random

    rnd = random.Random(1)
    b = MicroBatcher(policy)
    events: list[tuple[float, int, str, int]] = []  # (time, seq, kind, payload)
    seq = 0
    t = 0.0
    for rid in range(n):
        t += rnd.expovariate(rate)
        events.append((t, seq, "arrive", rid))
        seq += 1
    heapq.heapify(events)
    arrival: dict[int, float] = {}
    latency: list[float] = []
    sizes: list[int] = []
    running: dict[int, list[int]] = {}

    def apply(now: float, d: Decision) -> None:
        nonlocal seq
        for batch in d.batches:
            sizes.append(len(batch))
            running[seq] = list(batch)
            heapq.heappush(events, (now + fixed_s + per_item_s * len(batch), seq, "done", seq))
            seq += 1
        if d.wake_at is not None:
            heapq.heappush(events, (d.wake_at, seq, "tick", 0))
            seq += 1

    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "arrive":
            arrival[payload] = now
            apply(now, b.arrive(payload, now))
        elif kind == "tick":
            apply(now, b.tick(now))
        else:
            for rid in running.pop(payload):
                latency.append(now - arrival[rid])
            apply(now, b.batch_done(now))
    latency.sort()
    return {"served": len(latency), "mean_batch": sum(sizes) / len(sizes), "p99": latency[int(0.99 * len(latency))]}


def test_batches_grow_with_load_and_keep_up_where_one_by_one_would_not() -> None:
    policy = BatchPolicy(max_batch=64, max_wait_s=0.001)
    fixed, per_item = 0.001, 0.00005  # 1 ms per call: one-by-one tops out below 1000 req/s
    low = simulate(100, fixed, per_item, policy)
    high = simulate(5000, fixed, per_item, policy)
    assert low["served"] == high["served"] == 3000  # nothing lost
    assert low["mean_batch"] < 1.5
    assert high["mean_batch"] > 4
    assert high["p99"] < 0.010  # 5x the one-by-one capacity, still inside a 10 ms budget
    one_by_one = simulate(5000, fixed, per_item, BatchPolicy(max_batch=1, max_wait_s=0.0))
    assert one_by_one["p99"] > 0.1  # the queue runs away


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["arrive", "tick", "done", "drop"]), st.floats(0, 0.003)), max_size=80),
    st.integers(1, 5),
    st.integers(1, 3),
    st.booleans(),
)
def test_every_request_is_dispatched_once_in_order_within_limits(
    script: list[tuple[str, float]], max_batch: int, max_in_flight: int, adaptive: bool
) -> None:
    policy = BatchPolicy(max_batch=max_batch, max_wait_s=0.001, max_in_flight=max_in_flight, adaptive_wait=adaptive)
    b = MicroBatcher(policy)
    t, next_id = 0.0, 0
    dispatched: list[int] = []
    dropped: set[int] = set()
    in_flight = 0
    pending_wake: float | None = None

    def take(d: Decision) -> None:
        nonlocal in_flight, pending_wake
        for batch in d.batches:
            assert 1 <= len(batch) <= max_batch
            dispatched.extend(batch)
            in_flight += 1
        assert in_flight <= max_in_flight
        if d.wake_at is not None:
            assert d.wake_at >= t - 1e-12 or b.queue_depth > 0
            pending_wake = d.wake_at

    for op, dt in script:
        t += dt
        if op == "arrive":
            take(b.arrive(next_id, t))
            next_id += 1
        elif op == "tick":
            take(b.tick(t))
        elif op == "done" and in_flight:
            in_flight -= 1
            take(b.batch_done(t))
        elif op == "drop" and next_id and b.drop(next_id - 1):
            dropped.add(next_id - 1)
    # drain: finish batches and honour wake-ups until nothing is left
    for _ in range(10 * (next_id + 1)):
        if in_flight:
            in_flight -= 1
            take(b.batch_done(t))
        elif b.queue_depth:
            t = max(t, pending_wake or t)
            take(b.tick(t))
        else:
            break
    assert b.queue_depth == 0
    assert dispatched == [i for i in range(next_id) if i not in dropped]


def test_recorded_arrivals_leave_together_on_the_next_tick() -> None:
    b = MicroBatcher(BatchPolicy(max_batch=8, max_wait_s=0.001))
    for rid in range(3):
        assert b.arrive(rid, 0.0, decide=False) == Decision()
    assert b.tick(0.0).batches == ((0, 1, 2),)
