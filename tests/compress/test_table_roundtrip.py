"""Every table kind survives an artifact: state through safetensors, rebuilt from (num, dim, spec), strict load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from turborec._util.artifact import save_artifact
from turborec.compress import load_table_artifact, save_table_artifact
from turborec.errors import ArtifactError
from turborec.models.compact import (
    MixedDimEmbedding,
    PrunedRowEmbedding,
    quantize_table,
    table_spec,
)
from turborec.models.embeddings import EmbeddingPlan, EmbeddingSpec

NUM, DIM = 300, 13
COUNTS = np.random.default_rng(0).zipf(1.5, NUM).astype(np.float64)


def dense() -> nn.Embedding:
    torch.manual_seed(0)
    return nn.Embedding(NUM, DIM)


def trained(spec: EmbeddingSpec) -> nn.Module:
    """A table of ``spec`` whose state differs from a freshly built one (as after training)."""
    torch.manual_seed(1)
    table = EmbeddingPlan(default=spec).build("item", NUM, DIM)
    with torch.no_grad():
        for p in table.parameters():
            p.add_(torch.randn_like(p))
    return table


MAKERS: dict[str, Callable[[], nn.Module]] = {
    "dense": dense,
    "fp16": lambda: quantize_table(dense(), "fp16"),
    "bf16": lambda: quantize_table(dense(), "bf16"),
    "int8": lambda: quantize_table(dense(), "int8"),
    "int4": lambda: quantize_table(dense(), "int4"),
    "qr": lambda: trained(EmbeddingSpec("qr", {"collisions": 17})),
    "hash": lambda: trained(EmbeddingSpec("hash", {"buckets": 41, "num_hashes": 2, "seed": 5})),
    "pruned_rows": lambda: PrunedRowEmbedding.from_counts(dense(), COUNTS, 40),
    "pruned_rows/int4": lambda: PrunedRowEmbedding.from_counts(dense(), COUNTS, 40, EmbeddingSpec("int4")),
    "mixed_dim": lambda: MixedDimEmbedding.from_counts(dense(), COUNTS, [30, 100, 170], [DIM, 6, 2]),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_table_round_trips_through_an_artifact(name: str, tmp_path: Path) -> None:
    table = MAKERS[name]()
    spec = table_spec(table)
    # what a loader does: a fresh module from (num, dim, spec), then a strict load of the saved state
    fresh = EmbeddingPlan(default=spec).build("item", NUM, DIM)
    idx = torch.randint(0, NUM, (5, 9), generator=torch.Generator().manual_seed(2))
    assert not torch.equal(fresh(idx), table(idx))  # the state is what carries the table
    save_table_artifact(tmp_path / "t", table, name="item")
    loaded = load_table_artifact(tmp_path / "t")
    assert type(loaded) is type(table)
    assert table_spec(loaded) == spec
    assert torch.equal(loaded(idx), table(idx))
    assert {k: (v.dtype, v.shape) for k, v in loaded.state_dict().items()} == {
        k: (v.dtype, v.shape) for k, v in table.state_dict().items()
    }


def test_weights_that_do_not_fit_the_spec_are_an_artifact_error(tmp_path: Path) -> None:
    table = PrunedRowEmbedding.from_counts(dense(), COUNTS, 40)
    wrong = {"name": "item", "num": NUM, "dim": DIM, "spec": {"kind": "pruned_rows", "params": {"kept": 41}}}
    save_artifact(tmp_path / "t", kind="embedding-table", config=wrong, tensors=dict(table.state_dict()))
    with pytest.raises(ArtifactError, match="do not match"):
        load_table_artifact(tmp_path / "t")
