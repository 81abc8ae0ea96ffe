"""Operating points and Pareto fronts: pure logic, no models."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turborec.tune.pareto import (
    ACCURACY_VS_MEMORY,
    ACCURACY_VS_P99,
    ALL_OBJECTIVES,
    OperatingPoint,
    OperatingPoints,
    dominates,
    pareto_front,
)


def pt(key: str, acc: float, p99: float, mem: float = 1.0) -> OperatingPoint:
    return OperatingPoint(key, acc, p99, mem)


def test_dominance_needs_no_worse_everywhere_and_better_somewhere() -> None:
    a, b = pt("a", 0.30, 2.0), pt("b", 0.25, 3.0)
    assert dominates(a, b) and not dominates(b, a)
    assert not dominates(a, pt("a2", 0.30, 2.0))  # equal points do not dominate each other
    assert not dominates(pt("fast", 0.2, 1.0), pt("accurate", 0.3, 5.0))  # a trade-off
    # memory only counts when asked for
    assert dominates(pt("m", 0.3, 2.0, 9.0), pt("n", 0.3, 3.0, 1.0), ACCURACY_VS_P99)
    assert not dominates(pt("m", 0.3, 2.0, 9.0), pt("n", 0.3, 3.0, 1.0), ALL_OBJECTIVES)


def test_add_keeps_every_point_and_only_the_optimal_on_the_front() -> None:
    ops = OperatingPoints()
    assert ops.add(pt("slow-accurate", 0.30, 8.0))
    assert ops.add(pt("fast-rough", 0.20, 1.0))
    assert not ops.add(pt("dominated", 0.19, 2.0))
    assert ops.add(pt("better", 0.31, 4.0))  # pushes slow-accurate off the front
    assert {p.key for p in ops.optimal} == {"fast-rough", "better"}
    assert len(ops) == 4
    with pytest.raises(ValueError):
        ops.add(pt("better", 0.5, 0.1))


def test_front_queries_mirror_faiss_t_for_perf() -> None:
    ops = OperatingPoints()
    for p in (pt("a", 0.20, 1.0), pt("b", 0.25, 2.0), pt("c", 0.30, 6.0)):
        ops.add(p)
    assert ops.latency_for_accuracy(0.22) == 2.0
    assert ops.latency_for_accuracy(0.31) == math.inf
    assert ops.accuracy_for_latency(5.0) == 0.25
    assert ops.accuracy_for_latency(0.5) == -math.inf
    assert ops.dominated(pt("cand", 0.24, 2.5))
    assert not ops.dominated(pt("cand", 0.26, 2.5))


def test_front_is_sorted_by_cost_and_memory_front_differs() -> None:
    points = [pt("a", 0.3, 5.0, 10.0), pt("b", 0.2, 1.0, 20.0), pt("c", 0.25, 3.0, 1.0), pt("d", 0.1, 6.0, 30.0)]
    assert [p.key for p in pareto_front(points, ACCURACY_VS_P99)] == ["b", "c", "a"]
    assert [p.key for p in pareto_front(points, ACCURACY_VS_MEMORY)] == ["c", "a"]


points_strategy = st.lists(
    st.tuples(st.floats(0, 1), st.floats(0.01, 100), st.floats(0.1, 100)), min_size=1, max_size=30
)


@given(points_strategy)
def test_front_properties(raw: list[tuple[float, float, float]]) -> None:
    points = [pt(f"p{i}", a, t, m) for i, (a, t, m) in enumerate(raw)]
    front = pareto_front(points, ALL_OBJECTIVES)
    keys = {p.key for p in front}
    for p in front:  # mutually non-dominated
        assert not any(dominates(q, p, ALL_OBJECTIVES) for q in front)
    for p in points:  # everything off the front is dominated by something on it
        if p.key not in keys:
            assert any(dominates(q, p, ALL_OBJECTIVES) for q in front)
    ops = OperatingPoints(ALL_OBJECTIVES)
    for p in points:
        ops.add(p)
    assert {p.key for p in ops.optimal} == keys  # incremental add agrees with the batch front
