"""Paths of the real CTR samples (skipped when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path.name} not available")
    return path


@pytest.fixture(scope="session")
def criteo_10k(shared_data: Path) -> Path:
    return _need(shared_data / "criteo-sample-10k" / "wideresdnn_criteo_train_sample.txt.gz")


@pytest.fixture(scope="session")
def criteo_unlabelled(shared_data: Path) -> Path:
    return _need(shared_data / "criteo-sample-10k" / "wideresdnn_criteo_test_sample_unlabeled.txt.gz")


@pytest.fixture(scope="session")
def criteo_csv(shared_data: Path) -> Path:
    return _need(shared_data / "criteo-dac-sample" / "deepctr_criteo_sample.txt")


@pytest.fixture(scope="session")
def avazu_files(shared_data: Path) -> tuple[Path, Path]:
    folder = shared_data / "avazu-sample-9999"
    return _need(folder / "wideresdnn_avazu_train.csv.gz"), _need(folder / "wideresdnn_avazu_test.csv")
