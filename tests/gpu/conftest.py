"""Fixtures for the GPU backend tests: a CUDA device (skip without one) and seeded generators."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def cuda() -> torch.device:
    """The CUDA device; tests that need it also need Triton, and skip cleanly without either."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    pytest.importorskip("triton")
    return torch.device("cuda")


@pytest.fixture
def gen() -> torch.Generator:
    """A fresh seeded CPU generator (inputs are drawn on the CPU, then moved)."""
    return torch.Generator().manual_seed(1234)
