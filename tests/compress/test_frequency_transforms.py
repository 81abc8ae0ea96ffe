"""prune_rows_by_frequency and mixed_dims_by_frequency on a network: sizes chosen from data land in the plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.compress.nets import batch, rebuild, through_artifact, tiny_net
from turborec.compress import mixed_dims_by_frequency, model_nbytes, prune_rows_by_frequency
from turborec.errors import ConfigError, DataError
from turborec.models.compact import MixedDimEmbedding, PrunedRowEmbedding

COUNTS = {"item": np.random.default_rng(0).zipf(1.3, 60).astype(np.int64)}


def scores(net: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return net(*batch())


@pytest.mark.parametrize("keep,kept", [(0.25, 15), (10, 10)])
def test_prune_rows_records_the_kept_count_and_round_trips(keep: float, kept: int, tmp_path: Path) -> None:
    net = tiny_net()
    pruned = prune_rows_by_frequency(net, COUNTS, keep=keep)
    assert isinstance(pruned.item_emb, PrunedRowEmbedding) and pruned.item_emb.kept == kept
    assert pruned.config.embeddings.spec("item").to_dict() == {
        "kind": "pruned_rows", "params": {"kept": kept, "inner": {"kind": "dense", "params": {}}}
    }
    assert model_nbytes(pruned) == model_nbytes(net) - (60 - kept - 1) * 8 * 4 + 60 * 4
    fresh = rebuild(pruned)
    fresh.load_state_dict(through_artifact(pruned.state_dict(), tmp_path / "a"), strict=True)
    assert torch.equal(scores(fresh.eval()), scores(pruned))


def test_prune_rows_with_int4_rows_is_small() -> None:
    net = tiny_net()
    pruned = prune_rows_by_frequency(net, COUNTS, keep=0.5, inner="int4")
    item_bytes = 31 * (4 + 8) + 60 * 4  # 30 kept rows + shared, 8 dims -> 4 bytes, scale+bias, int32 remap
    assert model_nbytes(pruned) == model_nbytes(net) - 60 * 8 * 4 + item_bytes


def test_mixed_dims_record_tiers_round_trip_and_train(tmp_path: Path) -> None:
    net = tiny_net()
    mixed = mixed_dims_by_frequency(net, COUNTS, popular=0.2, small_dim=2)
    assert isinstance(mixed.item_emb, MixedDimEmbedding)
    assert mixed.config.embeddings.spec("item").to_dict() == {
        "kind": "mixed_dim", "params": {"tier_sizes": [12, 48], "tier_dims": [8, 2]}
    }
    fresh = rebuild(mixed)
    fresh.load_state_dict(through_artifact(mixed.state_dict(), tmp_path / "a"), strict=True)
    assert torch.equal(scores(fresh.eval()), scores(mixed))
    mixed.train()
    scores_sum = mixed(*batch()).sum()
    scores_sum.backward()
    assert all(p.grad is not None for p in mixed.item_emb.parameters())


def test_options_and_counts_are_validated_before_any_work() -> None:
    net = tiny_net()
    for keep in (0.0, 1.0, 0, 60, -3, True):
        with pytest.raises(ConfigError, match="keep"):
            prune_rows_by_frequency(net, COUNTS, keep=keep)
    with pytest.raises(ConfigError, match="inner"):
        prune_rows_by_frequency(net, COUNTS, keep=0.5, inner="int2")
    with pytest.raises(DataError, match=r"counts\['item'\].*one count per id"):
        prune_rows_by_frequency(net, {"item": np.ones(59)}, keep=0.5)
    with pytest.raises(DataError, match="non-negative"):
        prune_rows_by_frequency(net, {"item": np.full(60, -1.0)}, keep=0.5)
    with pytest.raises(ConfigError, match="no table named"):
        prune_rows_by_frequency(net, {"movie": np.ones(60)}, keep=0.5)
    with pytest.raises(ConfigError, match="small_dim"):
        mixed_dims_by_frequency(net, COUNTS, small_dim=8)
    with pytest.raises(ConfigError, match="popular"):
        mixed_dims_by_frequency(net, COUNTS, popular=1.0)
    pruned = prune_rows_by_frequency(net, COUNTS, keep=0.5)
    with pytest.raises(ConfigError, match="'pruned_rows' table; it needs the dense one"):
        mixed_dims_by_frequency(pruned, COUNTS)
