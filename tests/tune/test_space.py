"""The search space, its monotone relations and the option checks made before any work."""

from __future__ import annotations

import pytest

from turborec.errors import ConfigError
from turborec.tune.objective import AccuracyFloor
from turborec.tune.results import TuneOptions
from turborec.tune.run import check_memory_cap
from turborec.tune.space import (
    SERVICE_EXACT,
    ModelVariant,
    SearchSpace,
    default_indexes,
    default_models,
    default_space,
    index_nbytes,
    no_faster_than,
    smallest_model_nbytes,
)


def test_index_knobs_are_monotone_within_a_structure_only() -> None:
    assert no_faster_than("HNSW32|efSearch=64", "HNSW32|efSearch=16")
    assert not no_faster_than("HNSW32|efSearch=16", "HNSW32|efSearch=64")
    assert no_faster_than("IVF32,Flat|nprobe=8", "IVF32,Flat|nprobe=2")
    assert not no_faster_than("HNSW16|efSearch=64", "HNSW32|efSearch=16")  # another graph
    assert not no_faster_than("Flat", "Exact")


def test_default_indexes_scale_ivf_with_the_catalog() -> None:
    small = default_indexes(500)
    assert small[0] == SERVICE_EXACT and not any(s.startswith("IVF") for s in small)
    large = default_indexes(1_000_000)
    assert "IVF1024,Flat|nprobe=64" in large and "IVF1024,Flat|nprobe=256" in large


def test_model_variants_form_an_accuracy_bound_chain() -> None:
    models = {m.name: m for m in default_models(64, (32, 16, 64, 128))}
    assert models["int4"].parent == "int8" and models["int8"].parent == "fp16" and models["fp16"].parent == "fp32"
    assert models["student-d16"].parent == "student-d32" and models["student-d32"].parent == "fp32"
    assert "student-d64" not in models and "student-d128" not in models  # never wider than the reference
    for m in models.values():  # every parent exists
        assert m.parent is None or m.parent in models
    assert models["student-d16"].needs_training and not models["int4"].needs_training


def test_space_needs_the_reference_first() -> None:
    space = default_space(2000, 64, backends=("onnx-fp32",))
    assert space.backends[0] == "torch-eager" and space.baseline.index == SERVICE_EXACT
    with pytest.raises(ConfigError):
        SearchSpace(space.batching, space.backends, space.indexes, (ModelVariant("int8", quantize="int8"),))


def test_memory_estimates_and_the_cap_checked_before_work() -> None:
    assert index_nbytes("HNSW32|efSearch=16", 1000, 64) > index_nbytes("Flat", 1000, 64) == 1000 * 64 * 4
    assert smallest_model_nbytes(100, 1000, 16) == 1100 * (8 + 8)
    check_memory_cap(1.0, 100, 1000, [64, 16])
    with pytest.raises(ConfigError, match="below the smallest model"):
        check_memory_cap(0.001, 100, 1000, [64, 16])


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"rate": -5}, "--rate"), ({"rate": 0}, "--rate"), ({"slo_p99_ms": 0}, "--slo-p99-ms"),
    ({"memory_mb": -1}, "--memory-mb"), ({"budget_s": 0}, "--budget-minutes"),
    ({"objective": "latency"}, "--min-accuracy"), ({"rate": 10, "measure_s": 1}, "too few"),
    ({"rate": 100, "measure_s": 2}, "too few"), ({"windows": 0}, "windows"),
])
def test_options_are_checked_before_any_work(kwargs: dict[str, object], fragment: str) -> None:
    base: dict[str, object] = {"slo_p99_ms": 5.0, "rate": 500.0}
    with pytest.raises(ConfigError, match=fragment):
        TuneOptions(**{**base, **kwargs})  # type: ignore[arg-type]
    TuneOptions(5.0, 500.0, min_accuracy=AccuracyFloor.parse("0.9x"), objective="latency")


def test_windowed_latency_takes_the_median_window_and_counts_everything() -> None:
    import math

    import numpy as np

    from turborec.bench.replay import LatencyStats

    scheduled = np.arange(300) / 100.0  # 3 s at 100 req/s: three windows of 100
    latency = np.full(300, 0.001)
    latency[100:200] = 0.050  # a noisy neighbour in the middle second
    latency[250] = np.nan  # one lost request in the last second
    stats = LatencyStats.from_windows(latency, scheduled, 100.0, 0.0, 3.0, 3)
    assert stats.sent == 300 and stats.failed == 1 and stats.ok == 299
    assert stats.p99_windows_ms[0] == 1.0 and stats.p99_windows_ms[1] == 50.0 and math.isinf(stats.p99_windows_ms[2])
    assert stats.p99_ms == 50.0  # the median window: the burst is not hidden, the single loss does not decide
    assert math.isinf(stats.max_ms)
    assert LatencyStats.from_latencies(latency, 100.0, 3.0).p99_ms == 50.0
