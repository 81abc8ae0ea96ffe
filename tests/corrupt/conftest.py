"""One small trained artifact, and the corrupted copies made from it (never committed binaries)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.corrupt.corpus import CASES, Case, make
from turborec.data.synthetic import synthetic
from turborec.train import TwoTowerRecommender


@pytest.fixture(scope="session")
def good_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = synthetic(n_users=120, n_items=300, n_interactions=2500, seed=3)
    rec = TwoTowerRecommender(dim=8, hidden=(16,), history_len=10, epochs=1, batch_size=512, seed=0, progress=False)
    return rec.fit(data).save(tmp_path_factory.mktemp("good") / "tt")


@pytest.fixture(scope="session")
def corpus(good_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Case, Path]]:
    dest = tmp_path_factory.mktemp("corpus")
    return {case.name: (case, make(case, good_artifact, dest)) for case in CASES}


@pytest.fixture(params=[c.name for c in CASES])
def damaged(request: pytest.FixtureRequest, corpus: dict[str, tuple[Case, Path]]) -> tuple[Case, Path]:
    return corpus[str(request.param)]
