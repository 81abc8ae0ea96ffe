"""Fixtures: small real two-tower artifacts trained on synthetic data, and the serving model over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serving.front_ends import FRONT_ENDS
from turborec.data.interactions import Interactions
from turborec.data.synthetic import synthetic
from turborec.serving.loading import load_serving_model
from turborec.serving.net_model import NetServingModel
from turborec.train import TwoTowerRecommender


@pytest.fixture(scope="session")
def interactions() -> Interactions:
    return synthetic(n_users=200, n_items=300, n_interactions=4000, seed=0)


def _fit(data: Interactions, seed: int) -> TwoTowerRecommender:
    rec = TwoTowerRecommender(dim=16, hidden=(32,), history_len=20, epochs=1, batch_size=512, seed=seed,
                              progress=False)
    return rec.fit(data)


@pytest.fixture(scope="session")
def recommender(interactions: Interactions) -> TwoTowerRecommender:
    return _fit(interactions, seed=0)


@pytest.fixture(scope="session")
def artifact(recommender: TwoTowerRecommender, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return recommender.save(tmp_path_factory.mktemp("art") / "two-tower-a")


@pytest.fixture(scope="session")
def artifact_b(interactions: Interactions, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, differently seeded artifact (another version) for hot reloads."""
    return _fit(interactions, seed=1).save(tmp_path_factory.mktemp("art") / "two-tower-b")


@pytest.fixture(scope="session")
def model(artifact: Path) -> NetServingModel:
    m = load_serving_model(artifact)
    assert isinstance(m, NetServingModel)
    return m


@pytest.fixture(params=FRONT_ENDS)
def front_end(request: pytest.FixtureRequest) -> str:
    """Both HTTP front ends: the ASGI app in process, the lean httptools server over loopback."""
    return str(request.param)
