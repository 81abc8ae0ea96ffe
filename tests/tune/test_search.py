"""The search end to end on small synthetic data: a real model, the real service, a real HTTP server."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from turborec.data import apply_protocol, load_dataset
from turborec.data.splits import Split
from turborec.serving.accelerated import build_index, build_serving_model
from turborec.serving.loading import load_tuned_serving_model
from turborec.serving.model import Query
from turborec.serving.net_model import NetServingModel
from turborec.serving.tiers import Tier
from turborec.train import TwoTowerRecommender
from turborec.train.recommender import Recommender
from turborec.tune.accuracy import EvalSet, served_ndcg
from turborec.tune.report import MEMORY_PLOT, P99_PLOT, summary
from turborec.tune.results import TuneOptions
from turborec.tune.run import run_tune
from turborec.tune.space import SERVICE_EXACT, ModelVariant, SearchSpace, ServingKnobs

SYNTH = {"n_users": 300, "n_items": 200, "n_interactions": 9000, "seed": 3}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recommender, Split]:
    data = load_dataset(None, "synthetic", **SYNTH)
    split = apply_protocol("recbole", data, seed=1)
    rec = TwoTowerRecommender(dim=16, hidden=(32,), epochs=3, progress=False, seed=1)
    return rec.fit(split.train, split.valid), split


def small_space() -> SearchSpace:
    return SearchSpace(
        batching=((16, 0.5, "inline"), (4, 0.0, "thread")),
        backends=("torch-eager", "onnx-fp32"),
        indexes=(SERVICE_EXACT, "HNSW16|efSearch=8", "HNSW16|efSearch=32"),
        models=(ModelVariant("fp32"), ModelVariant("int8", quantize="int8", parent="fp32"),
                ModelVariant("int4", quantize="int4", parent="int8")),
        admission=(0.8, 2.0),
    )


def test_served_accuracy_agrees_with_full_ranking_evaluation(fitted: tuple[Recommender, Split]) -> None:
    rec, split = fitted
    eval_set = EvalSet.from_interactions(rec, split.valid)
    exact = served_ndcg(rec, eval_set)
    reference = rec.evaluate(split.valid, ks=(10,))["ndcg@10"]  # turborec.metrics, an independent implementation
    assert exact == pytest.approx(reference, abs=2e-3)
    flat = served_ndcg(rec, eval_set, index=build_index("Flat", rec.item_vectors()))
    assert flat == pytest.approx(exact, abs=2e-3)


def test_accelerated_model_answers_like_the_service_model(fitted: tuple[Recommender, Split]) -> None:
    rec, _ = fitted
    assert rec.users is not None
    plain = build_serving_model(rec, ServingKnobs(), "v")
    fast = build_serving_model(rec, ServingKnobs(backend="onnx-fp32", index="Flat"), "v")
    assert isinstance(plain, NetServingModel) and isinstance(fast, NetServingModel)
    assert plain.index is plain.exact and plain.runner is None  # the same model, its parts swapped
    assert fast.index is not fast.exact and fast.runner is not None and fast.runner.kind == "onnx-fp32"
    queries = [Query(str(u), k=10) for u in list(rec.users.ids)[:20]] + [Query(None, ("1", "2"), k=5)]
    a = plain.recommend_batch(queries, Tier.FULL).results
    b = fast.recommend_batch(queries, Tier.FULL).results
    overlap = np.mean([len(set(x.items) & set(y.items)) / max(len(x.items), 1) for x, y in zip(a, b)])
    assert overlap >= 0.95
    seen = set(map(str, rec.items.decode(rec.histories.of(0)))) if rec.items and rec.histories else set()
    assert not seen & set(b[0].items)  # training items stay excluded through the index


SLACK_SLO_MS = 5000.0


def test_search_chooses_the_most_accurate_feasible_point_and_saves_it(fitted: tuple[Recommender, Split],
                                                                      tmp_path: Path) -> None:
    rec, split = fitted
    # the SLO is far above any answer time so the verdict is the choice, not this machine's speed
    options = TuneOptions(slo_p99_ms=SLACK_SLO_MS, rate=150.0, budget_s=300.0, measure_s=0.7, warmup_s=0.2,
                          confirm_top=1, confirm_s=1.0, n_requests=300, windows=1)
    result = run_tune(rec, split, options, tmp_path, space=small_space(), progress=False, log=lambda _: None)
    assert result.exit_code == 0
    chosen = result.chosen
    assert chosen is not None and chosen.http is not None and chosen.http.p99_ms <= SLACK_SLO_MS
    feasible = [p for p in result.points() if result.constraints.feasible(p)]
    assert len(feasible) >= 5
    assert all(chosen.accuracy is not None and chosen.accuracy >= p.accuracy for p in feasible)
    # the HNSW efSearch=8 graph is no better than efSearch=32 at the same knobs: both accuracies are real
    by_key = {r.key: r for r in result.records}
    assert any(k.startswith("int4") for k in by_key)
    assert {r.candidate.stage for r in result.records} == {"batching", "admission", "backend", "index", "model"}
    assert any(r.candidate.knobs.shed_at == 2.0 for r in result.records)
    # the saved artifact rebuilds the chosen serving path and records its settings
    assert result.artifact is not None
    model, knobs = load_tuned_serving_model(result.artifact)
    assert knobs == chosen.candidate.knobs
    out = model.recommend_batch([Query(str(next(iter(rec.users.ids))), k=10)], Tier.FULL)  # type: ignore[union-attr]
    assert len(out.results[0].items) == 10
    manifest = json.loads((Path(result.artifact) / "manifest.json").read_text())
    assert manifest["config"]["serving"]["max_batch"] == knobs.max_batch
    assert manifest["config"]["serving"]["slo_p99_ms"] == SLACK_SLO_MS
    report = (tmp_path / "report.md").read_text()
    assert "(chosen)" in report and report.count("\n| fp32 ·") + report.count("\n| int") >= 5
    assert (tmp_path / P99_PLOT).stat().st_size > 1000 and (tmp_path / MEMORY_PLOT).stat().st_size > 1000
    points = json.loads((tmp_path / "points.json").read_text())
    assert points["chosen"] == chosen.key and points["exit_code"] == 0


def test_an_slo_nothing_meets_exits_3_with_the_closest_points(fitted: tuple[Recommender, Split],
                                                              tmp_path: Path) -> None:
    rec, split = fitted
    options = TuneOptions(slo_p99_ms=0.001, rate=150.0, budget_s=300.0, measure_s=0.7, warmup_s=0.2,
                          confirm_top=1, n_requests=300, windows=1)
    space = SearchSpace(((16, 0.5, "inline"),), ("torch-eager",), (SERVICE_EXACT,),
                        (ModelVariant("fp32"), ModelVariant("int8", quantize="int8", parent="fp32")))
    result = run_tune(rec, split, options, tmp_path, space=space, progress=False, log=lambda _: None, plots=False)
    assert result.exit_code == 3 and result.chosen is None and result.artifact is None
    assert not (tmp_path / "model").exists()
    text = summary(result)
    assert "no configuration meets the constraints" in text
    assert len(result.selection.closest) == 2 and all("SLO" in " ".join(why) for _, why in result.selection.closest)
    assert all(math.isfinite(p.accuracy) for p, _ in result.selection.closest)
