"""The content checks every artifact load runs (``turborec.train.validate``, ``_util.artifact.check_finite``),
on arrays of each damaged shape, including the pipeline's co-occurrence matrix and ranker table sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from turborec._util.artifact import check_finite
from turborec.errors import ArtifactError
from turborec.train.validate import (
    check_csr,
    check_declared_dims,
    check_declared_sizes,
    check_histories,
    check_length,
)

OFFSETS = np.array([0, 2, 2, 5], dtype=np.int64)
ITEMS = np.array([0, 3, 1, 2, 4], dtype=np.int64)


def test_good_contents_pass() -> None:
    check_histories("w", OFFSETS, ITEMS, n_users=3, n_items=5)
    check_csr("w", "cooc", OFFSETS, ITEMS, ITEMS.astype(np.float32), (3, 5))
    check_declared_dims("m", {"n_users": 3, "n_items": 5, "token_width": 4}, {"n_users": 3, "n_items": 5})
    check_declared_sizes("m", "cardinalities", [5, 10], stored_elements=100)
    check_length("w", "item_pop", np.zeros(5), 5)
    check_finite({"a": np.ones(3, dtype=np.float32), "b": torch.ones(2, dtype=torch.bfloat16), "i": np.arange(3)}, "w")


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: check_histories("w", OFFSETS, np.array([0, 3, 1, 2, 5]), 3, 5), "outside [0, 5)"),
        (lambda: check_histories("w", OFFSETS, np.array([0, 3, -1, 2, 4]), 3, 5), "outside [0, 5)"),
        (lambda: check_histories("w", OFFSETS[:-1], ITEMS, 3, 5), "expected 4 (rows + 1)"),
        (lambda: check_histories("w", np.array([0, 3, 2, 5]), ITEMS, 3, 5), "never decreases"),
        (lambda: check_histories("w", OFFSETS, ITEMS.astype(np.float32), 3, 5), "expected integers"),
        (lambda: check_csr("w", "cooc", OFFSETS, np.array([0, 3, 1, 2, 9]), np.ones(5), (3, 5)), "'cooc.indices'"),
        (lambda: check_csr("w", "cooc", OFFSETS, ITEMS, np.ones(4), (3, 5)), "one length"),
        (lambda: check_declared_dims("m", {"n_users": 3, "n_items": 10**9}, {"n_users": 3, "n_items": 5}),
         "dims.n_items=1000000000"),
        (lambda: check_declared_dims("m", {"n_items": -1}, {}), "not a size"),
        (lambda: check_declared_dims("m", [3, 5], {}), "not a mapping"),
        (lambda: check_declared_sizes("m", "cardinalities", [5, 10**9], stored_elements=100),
         "a table of 1000000000 rows"),
        (lambda: check_declared_sizes("m", "cardinalities", "5", stored_elements=100), "not a list"),
        (lambda: check_length("w", "item_pop", np.zeros(4), 5), "expected (5,)"),
        (lambda: check_finite({"net.w": np.array([1.0, np.nan], dtype=np.float32)}, "w"), "'net.w' holds 1"),
        (lambda: check_finite({"net.w": torch.tensor([np.inf, 1.0, -np.inf])}, "w"), "'net.w' holds 2"),
    ],
)
def test_damaged_contents_are_refused_naming_the_array(call: object, needle: str) -> None:
    with pytest.raises(ArtifactError) as err:
        call()  # type: ignore[operator]
    assert needle in str(err.value)
