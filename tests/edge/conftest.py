"""Fixtures for the edge tests: a small two-tower fitted on ml-latest-small's early history, its exported
edge models (dot and MLP re-ranker) and a written bundle. Built once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from turborec.data import Split, load_movielens  # noqa: E402
from turborec.edge import EdgeBundle  # noqa: E402
from turborec.export import (  # noqa: E402
    EdgeExportConfig,
    EdgeModels,
    RerankerConfig,
    Session,
    SessionFactory,
    bind_sessions,
    export_edge_models,
    fit_reranker,
    replays,
    user_time_split,
    write_bundle,
)
from turborec.train import Histories, TwoTowerRecommender  # noqa: E402

N_CANDIDATES = 300


@pytest.fixture(scope="session")
def ml_split(ml_small_dir: Path) -> Split:
    return user_time_split(load_movielens(ml_small_dir), (0.7, 0.1, 0.2))


@pytest.fixture(scope="session")
def two_tower(ml_split: Split) -> TwoTowerRecommender:
    """A deliberately small, briefly trained two-tower (tests check behaviour, not accuracy)."""
    torch.set_num_threads(1)
    rec = TwoTowerRecommender(dim=16, hidden=(32,), history_len=20, epochs=1, batch_size=512, progress=False, seed=0)
    return rec.fit(ml_split.train)


@pytest.fixture(scope="session")
def dot_models(two_tower: TwoTowerRecommender) -> EdgeModels:
    return export_edge_models(two_tower, None, EdgeExportConfig(n_candidates=N_CANDIDATES))


@pytest.fixture(scope="session")
def valid_sessions(two_tower: TwoTowerRecommender, dot_models: EdgeModels, ml_split: Split) -> list[Session]:
    factory = SessionFactory(two_tower, dot_models, N_CANDIDATES)
    return bind_sessions(factory, replays(Histories.from_interactions(ml_split.train), ml_split.valid, 10)[:80])


@pytest.fixture(scope="session")
def mlp_models(two_tower: TwoTowerRecommender, dot_models: EdgeModels, valid_sessions: list[Session]) -> EdgeModels:
    factory = SessionFactory(two_tower, dot_models, N_CANDIDATES)
    reranker = fit_reranker(factory, valid_sessions, 5, RerankerConfig(epochs=2))
    return export_edge_models(two_tower, reranker, EdgeExportConfig(n_candidates=N_CANDIDATES))


@pytest.fixture(scope="session")
def user_index(two_tower: TwoTowerRecommender) -> int:
    assert two_tower.histories is not None
    return int(np.argmax(two_tower.histories.lengths() > 30))  # a user with a full history window


@pytest.fixture(scope="session")
def mlp_bundle(two_tower: TwoTowerRecommender, mlp_models: EdgeModels, user_index: int) -> EdgeBundle:
    assert two_tower.histories is not None
    return SessionFactory(two_tower, mlp_models, N_CANDIDATES).session(user_index, two_tower.histories.of(user_index))


@pytest.fixture(scope="session")
def mlp_bundle_dir(mlp_bundle: EdgeBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(mlp_bundle, tmp_path_factory.mktemp("edge") / "bundle")
