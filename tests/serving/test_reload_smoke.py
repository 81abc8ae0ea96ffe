"""The hot-reload smoke test asks for whole answers: finite scores and k items for each query (issue 15.4).
A model that answers with NaN scores, or with empty lists, is refused and the old one keeps serving."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from turborec.serving.model import BatchOutput, Query, Ranked
from turborec.serving.net_model import NetServingModel
from turborec.serving.service import RecommendService, ReloadRefused
from turborec.serving.settings import ServeSettings
from turborec.serving.stores import MemoryStore
from turborec.serving.tiers import Tier


class Damaged:
    """A real model whose answers are damaged after the fact: NaN scores, or lists cut short."""

    def __init__(self, inner: NetServingModel, how: str) -> None:
        self.inner, self.how = inner, how

    @property
    def version(self) -> str:
        return "damaged-" + self.how

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return self.inner.tiers

    def recommend_batch(self, queries: Sequence[Query], tier: Tier) -> BatchOutput:
        out = self.inner.recommend_batch(queries, tier)
        results = []
        for r in out.results:
            if self.how == "nan":
                results.append(Ranked(r.items, np.full(len(r.scores), np.nan, dtype=np.float32), r.user_known))
            elif self.how == "empty":
                results.append(Ranked([], np.zeros(0, dtype=np.float32), r.user_known))
            else:  # one NaN row silently shortens the list: the finite scores that remain look fine
                results.append(Ranked(r.items[:-1], r.scores[:-1], r.user_known))
        return BatchOutput(results, out.timings)

    def similar(self, item: str, k: int) -> Ranked:
        return self.inner.similar(item, k)

    def knows_item(self, item: str) -> bool:
        return self.inner.knows_item(item)


@pytest.mark.parametrize("how", ["nan", "empty", "short"])
def test_reload_refuses_a_model_with_damaged_answers(model: NetServingModel, how: str, tmp_path: Path) -> None:
    settings = ServeSettings(slo_p99_ms=2000.0, artifacts_root=tmp_path)
    service = RecommendService(model, MemoryStore(), settings, loader=lambda _p: Damaged(model, how))
    with pytest.raises(ReloadRefused) as err:
        asyncio.run(service.reload(tmp_path))
    assert "smoke test" in str(err.value)
    assert service.model is model


def test_reload_accepts_a_whole_model(model: NetServingModel, tmp_path: Path) -> None:
    service = RecommendService(model, MemoryStore(), ServeSettings(slo_p99_ms=2000.0, artifacts_root=tmp_path),
                               loader=lambda _p: model)
    assert asyncio.run(service.reload(tmp_path)) == (model.version, model.version)
