"""A CTR ranker served on POST /v1/score: same batching, admission and tiers as /v1/recommend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.serving.front_ends import FRONT_ENDS, call
from turborec.data.ctr import read_avazu
from turborec.serving.app import create_app, openapi_schema
from turborec.serving.loading import load_serving_model
from turborec.serving.ranker_model import RankerServingModel
from turborec.serving.service import RecommendService
from turborec.serving.settings import ServeSettings
from turborec.serving.stores import MemoryStore
from turborec.serving.tiers import Tier
from turborec.train.ctr import load_ranker
from turborec.train.ctr_recipe import ctr_recipe, save_ctr_run, train_ctr

Client = httpx.AsyncClient


@pytest.fixture(scope="module")
def ranker_dir(tmp_path_factory: pytest.TempPathFactory, avazu_files: tuple[Path, Path]) -> Path:
    raw = read_avazu(avazu_files[0], nrows=3000)
    # wide: 3 tiers; no LR guard (calibrate=false): this short fit may not beat its LR start, and the tiers
    # must differ
    run = train_ctr(raw, ctr_recipe("dcnv2", "avazu", {"epochs": "2", "eval_every": "20", "calibrate": "false"}))
    return save_ctr_run(tmp_path_factory.mktemp("ranker") / "dcn", run)


def _rows(avazu_files: tuple[Path, Path], n: int) -> tuple[list[dict[str, Any]], Any]:
    raw = read_avazu(avazu_files[1], header=None, nrows=n)
    rows = [{name: raw.categorical[r, j] for j, name in enumerate(raw.sparse_names)} for r in range(n)]
    return rows, raw


def _serve(
    path: Path, body: Callable[[Client], Awaitable[None]], front_end: str, tier: Tier | None = None, **options: Any
) -> None:
    settings = ServeSettings(artifact=path, **{"slo_p99_ms": 2000.0, **options})
    model = load_serving_model(path)
    service = RecommendService(model, MemoryStore(), settings, loader=lambda p: load_serving_model(p))
    service.warm_up(rounds=2)
    if tier is not None:  # as the SLO controller does when the budget is missed (its policy is tested in serving)
        service.slo.force(0.0, tier)

    call(service, body, front_end)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_score_returns_the_rankers_probabilities(
    ranker_dir: Path, avazu_files: tuple[Path, Path], front_end: str
) -> None:
    rows, raw = _rows(avazu_files, 40)
    want = load_ranker(ranker_dir).predict(raw)

    async def body(c: Client) -> None:
        # concurrent requests share micro-batches; each gets its own rows' scores back, in order
        replies = await asyncio.gather(*(c.post("/v1/score", json={"rows": rows[i : i + 8]}) for i in range(0, 40, 8)))
        got = []
        for r in replies:
            assert r.status_code == 200, r.text
            assert r.json()["tier"] == "full" and r.headers["x-turborec-tier"] == "full"
            got += r.json()["probabilities"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        bad = await c.post("/v1/score", json={"rows": [{"no_such_feature": "1"}]})
        assert bad.status_code == 400 and "unknown feature 'no_such_feature'" in bad.json()["detail"]
        empty = await c.post("/v1/score", json={"rows": []})
        assert empty.status_code == 422
        rec = await c.post("/v1/recommend", json={"user": "1"})
        assert rec.status_code == 400 and "/v1/score" in rec.json()["detail"]
        metrics = (await c.get("/metrics")).text
        assert 'turborec_stage_latency_seconds_count{stage="ranking"}' in metrics
        assert 'turborec_requests_total{endpoint="score",status="200"}' in metrics

    _serve(ranker_dir, body, front_end)


def test_score_degrades_along_the_ranker_ladder(ranker_dir: Path, avazu_files: tuple[Path, Path]) -> None:
    model = load_serving_model(ranker_dir)
    assert isinstance(model, RankerServingModel)
    assert model.tiers == (Tier.FULL, Tier.CHEAP_RANKER, Tier.POPULAR)
    _, raw = _rows(avazu_files, 200)
    rows = model.to_raw([{n: raw.categorical[r, j] for j, n in enumerate(raw.sparse_names)} for r in range(200)])
    full, cheap, prior = (model.score_batch([rows], t)[0] for t in model.tiers)
    assert np.all(prior == prior[0]) and 0 < prior[0] < 1  # no model call: the prior of a row of unseen values
    assert not np.allclose(cheap, full) and np.corrcoef(cheap, full)[0, 1] > 0.5  # first-order term alone

    one = [{n: str(v) for n, v in zip(raw.sparse_names, raw.categorical[0])}]

    def expect(tier: Tier, value: float) -> Callable[[Client], Awaitable[None]]:
        async def body(c: Client) -> None:
            r = await c.post("/v1/score", json={"rows": one})
            assert r.status_code == 200 and r.json()["tier"] == tier.label
            assert r.json()["probabilities"][0] == pytest.approx(value, rel=1e-5)

        return body

    for tier, values in zip(model.tiers, (full, cheap, prior)):
        _serve(ranker_dir, expect(tier, float(values[0])), "asgi", tier=tier)


def test_openapi_documents_score(ranker_dir: Path) -> None:
    settings = ServeSettings(artifact=ranker_dir)
    service = RecommendService(load_serving_model(ranker_dir), MemoryStore(), settings)
    doc = openapi_schema(create_app(service))
    op = doc["paths"]["/v1/score"]["post"]
    assert "200" in op["responses"] and "503" in op["responses"]
    schema = doc["components"]["schemas"]["ScoreRequest"]["properties"]["rows"]
    assert schema["maxItems"] == settings.max_score_rows and schema["minItems"] == 1
