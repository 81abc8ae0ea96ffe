"""Shared fixtures: the real data folder beside the checkout, and seeding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TURBOREC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ml_small_dir(shared_data: Path) -> Path:
    path = shared_data / "ml-latest-small"
    if not (path / "ratings.csv").is_file():
        pytest.skip("ml-latest-small not available")
    return path


def pytest_configure(config: pytest.Config) -> None:
    # One intra-op thread: tests share 2 cores with servers and other processes, and
    # oversubscribed OpenMP threads spin and slow everything down by orders of magnitude.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(REPO / ".cache" / "inductor"))
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
