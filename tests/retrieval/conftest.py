"""Clustered catalogs shared by the retrieval tests (built once per session)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from turborec.retrieval.synthetic import ClusteredSpace

DIM = 32
N_ITEMS = 4000


@pytest.fixture(scope="session", autouse=True)
def _faiss_one_thread() -> Iterator[None]:
    """The test machine's cores are shared; FAISS's OpenMP spinning on both makes tests slower, not faster."""
    faiss = pytest.importorskip("faiss")
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="session")
def space() -> ClusteredSpace:
    return ClusteredSpace(dim=DIM, n_clusters=40, rank=12, seed=3)


@pytest.fixture(scope="session")
def catalog(space: ClusteredSpace) -> np.ndarray:
    return space.sample(N_ITEMS, seed=1)


@pytest.fixture(scope="session")
def queries(space: ClusteredSpace) -> np.ndarray:
    return space.sample(48, seed=2, vary_norms=False)
