"""Constraints, selection and skip rules: pure logic, no models."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turborec.errors import ConfigError
from turborec.tune.objective import AccuracyFloor, Bounds, Constraints, select, skip_reason
from turborec.tune.pareto import ALL_OBJECTIVES, OperatingPoint, OperatingPoints


def pt(key: str, acc: float, p99: float, mem: float = 1.0, p50: float = math.nan) -> OperatingPoint:
    return OperatingPoint(key, acc, p99, mem, p50)


@pytest.mark.parametrize(("text", "value", "relative", "resolved"), [
    ("0.97x", 0.97, True, 0.194), ("1x", 1.0, True, 0.2), ("0.25", 0.25, False, 0.25), (" 0.5X ", 0.5, True, 0.1),
])
def test_accuracy_floor_parses_relative_and_absolute(text: str, value: float, relative: bool, resolved: float) -> None:
    floor = AccuracyFloor.parse(text)
    assert (floor.value, floor.relative) == (value, relative)
    assert floor.resolve(0.2) == pytest.approx(resolved)


@pytest.mark.parametrize(("text", "fragment"), [
    ("1.2x", "above 1.0x"), ("1.5", "at most 1"), ("0", "positive"), ("abc", "expected a number"), ("-0.2", "expected"),
])
def test_accuracy_floor_rejects_contradictions(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        AccuracyFloor.parse(text)


@pytest.mark.parametrize("kwargs", [{"slo_p99_ms": 0}, {"slo_p99_ms": -1}, {"slo_p99_ms": math.nan},
                                    {"slo_p99_ms": 5, "memory_mb": 0}])
def test_constraints_reject_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        Constraints(**kwargs)


def test_select_maximises_accuracy_within_the_budget_and_breaks_ties_by_p99() -> None:
    c = Constraints(5.0, min_accuracy=0.2, memory_mb=10.0)
    points = [
        pt("too-slow", 0.40, 6.0), pt("too-big", 0.39, 1.0, 11.0), pt("best", 0.30, 4.0),
        pt("tie-slower", 0.30, 4.5), pt("fast-rough", 0.25, 1.0), pt("below-floor", 0.15, 0.5),
    ]
    s = select(points, c)
    assert s.chosen is not None and s.chosen.key == "best"
    assert {p.key for p in s.feasible} == {"best", "tie-slower", "fast-rough"}
    latency = select(points, c, objective="latency")
    assert latency.chosen is not None and latency.chosen.key == "fast-rough"


def test_infeasible_selection_names_the_closest_points_and_their_limits() -> None:
    c = Constraints(2.0, min_accuracy=0.2)
    points = [pt("far", 0.3, 40.0), pt("near", 0.3, 2.5, p50=1.0), pt("shed", 0.3, math.inf), pt("rough", 0.1, 1.0)]
    s = select(points, c)
    assert s.chosen is None and not s.ok and not s.feasible
    assert [p.key for p, _ in s.closest] == ["near", "rough", "far"]
    near_why, rough_why = s.closest[0][1], s.closest[1][1]
    assert near_why == ("p99 2.50 ms > SLO 2 ms",)
    assert rough_why == ("NDCG@10 0.1000 < floor 0.2000",)
    assert Constraints(2.0).violations(pt("x", 0.3, math.inf)) == ["p99 inf (requests shed or lost) > SLO 2 ms"]
    heavy = OperatingPoint("heavy", 0.3, math.inf, 1.0, 9.0, failed_share=0.6)
    light = OperatingPoint("light", 0.2, math.inf, 1.0, 3.0, failed_share=0.05)
    assert Constraints(2.0).violations(heavy) == ["p99 inf (60% of requests shed or lost) > SLO 2 ms"]
    # among shedding points, the one losing less is closer, whatever its accuracy
    assert [p.key for p, _ in select([heavy, light], Constraints(2.0)).closest] == ["light", "heavy"]


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0.01, 20), st.floats(0.1, 20)), min_size=1, max_size=25),
       st.floats(0.5, 10), st.none() | st.floats(0.0, 1.0), st.none() | st.floats(0.5, 20))
def test_chosen_point_is_feasible_and_at_least_as_accurate_as_every_feasible_point(
    raw: list[tuple[float, float, float]], slo: float, floor: float | None, cap: float | None
) -> None:
    c = Constraints(slo, floor if floor else None, cap)
    points = [pt(f"p{i}", a, t, m) for i, (a, t, m) in enumerate(raw)]
    s = select(points, c)
    feasible = [p for p in points if p.p99_ms <= slo and (not floor or p.accuracy >= floor) and (cap is None or p.memory_mb <= cap)]
    assert (s.chosen is None) == (not feasible)
    if s.chosen is not None:
        assert c.feasible(s.chosen)
        assert all(s.chosen.accuracy >= p.accuracy for p in feasible)


def test_skip_rules_use_optimistic_bounds() -> None:
    c = Constraints(5.0, min_accuracy=0.2, memory_mb=10.0)
    inc = pt("incumbent", 0.30, 4.0)
    assert skip_reason(Bounds(memory_min_mb=12.0), c, None) == "memory 12.00 MB > cap 10 MB"
    why = skip_reason(Bounds(accuracy_max=0.15, accuracy_from="no more accurate than int8"), c, None)
    assert why is not None and "floor" in why and "int8" in why
    why = skip_reason(Bounds(p99_min_ms=6.0, p99_from="no faster than HNSW32|efSearch=16"), c, None)
    assert why is not None and "SLO" in why and "efSearch=16" in why
    why = skip_reason(Bounds(accuracy_max=0.25), c, inc)
    assert why is not None and why.startswith("cannot beat incumbent")
    assert skip_reason(Bounds(accuracy_max=0.31), c, inc) is None  # could be more accurate: measure it
    assert skip_reason(Bounds(accuracy_max=0.299), c, inc, tie=0.01) is None  # a near-tie maps the front
    assert skip_reason(Bounds(accuracy_max=0.25), c, None) is None  # nothing feasible yet: everything may help
    latency = skip_reason(Bounds(p99_min_ms=4.5), c, inc, objective="latency")
    assert latency is not None and "cannot beat" in latency


def test_skip_when_dominated_by_the_measured_front() -> None:
    front = OperatingPoints(ALL_OBJECTIVES)
    front.add(pt("a", 0.30, 2.0, 1.0))
    c = Constraints(5.0)
    assert skip_reason(Bounds(accuracy_max=0.29, p99_min_ms=2.5, memory_min_mb=1.5), c, None, front) == "dominated by a"
    assert skip_reason(Bounds(accuracy_max=0.29, p99_min_ms=1.5, memory_min_mb=1.5), c, None, front) is None
