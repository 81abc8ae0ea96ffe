"""One intra-op thread, and small fitted models shared by the estimator-level tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def small_split() -> Any:
    from turborec.data import apply_protocol, synthetic

    data = synthetic(n_users=300, n_items=150, n_interactions=9_000, seed=3)
    return apply_protocol("recbole", data, seed=1)


@pytest.fixture(scope="package")
def two_tower(small_split: Any) -> Any:
    """A small fitted two-tower (dim 32, one hidden layer of 64) on synthetic data."""
    from turborec.train import TwoTowerRecommender

    # six epochs of the pairs objective: a teacher worth compressing at a short fit
    est = TwoTowerRecommender(dim=32, hidden=(64,), objective="pairs", epochs=6, patience=6, progress=False, seed=0)
    return est.fit(small_split.train, small_split.valid)
