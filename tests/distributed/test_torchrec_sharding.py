"""TorchRec sharding of the two-tower tables: each rank holds only its shard, and the numbers don't change."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.distributed.conftest import run_job

pytestmark = pytest.mark.distributed
pytest.importorskip("torchrec")


@pytest.mark.parametrize(("mode", "history"), [("table_wise", "shared"), ("row_wise", "shared"),
                                               ("table_wise", "unshared")])
def test_sharded_two_tower_matches_unsharded_net(mode: str, history: str, tmp_path: Path) -> None:
    results = run_job("torchrec_shards", tmp_path, args=(mode, history))
    for r in results:
        assert r["user_diff"] < 1e-5 and r["item_diff"] < 1e-5
    assert results[0]["roundtrip"] == 0.0  # scatter then gather gives the tables back bit for bit
    full = results[0]["full"]
    assert ("history_item" in full) == (history == "unshared")
    for table, (rows, cols) in full.items():
        held = [[size for _, size in r["local"][table]] for r in results]
        cells = [sum(n * m for n, m in sizes) for sizes in held]
        assert sum(cells) == rows * cols, f"{table}: shards do not add up to the table"
        if mode == "row_wise":
            assert all(0 < c < rows * cols for c in cells), f"{table}: a rank holds all of it or none"
        else:  # table-wise: one owner per table, the other rank holds nothing of it
            assert sorted(cells) == [0, rows * cols]
    if mode == "table_wise":
        owners = {s["table"]: s["rank"] for s in results[0]["plan"]}
        assert set(owners.values()) == {0, 1}  # the tables are spread over both ranks


@pytest.mark.parametrize("mode", ["table_wise", "row_wise"])
def test_two_ranks_with_adam_on_the_shards_take_the_single_process_steps(mode: str, tmp_path: Path) -> None:
    """The default table optimizer (Adam on TorchRec's dense kernel) and ShardedParallel's gradient averaging:
    two ranks, each on half of every batch, get the gradients one process gets on the whole batch (tables and
    dense parts) and move every weight the way it does."""
    results = run_job("sharded_adam_steps", tmp_path, args=(mode, "adam"))
    grads = {k: v for r in results for k, v in r["grads"].items()}
    tables = {k for k in grads if k.startswith("table ")}
    assert tables == {"table user", "table item", "table history_item", "table item_feature"}
    assert max(grads.values()) < 1e-6, grads
    cosines = results[0]["cosines"]
    assert cosines["user_tower.user_emb.weight"] > 0.99 and cosines["item_tower.item_emb.weight"] > 0.99
    # every weight with a true gradient moves as in one process (the softmax-invariant last bias aside)
    # (0.98, not 0.99: the estimator's fused Adam rounds differently, and the item tower's first bias, whose
    # gradient is small, then moves at cosine 0.988; every other weight stays above 0.99)
    apart = {k: v for k, v in cosines.items() if v <= 0.98 and not k.endswith("mlp.2.bias")}
    assert not apart, apart


def test_fused_adagrad_on_the_shards_is_not_adam(tmp_path: Path) -> None:
    """The fused kernel's Adagrad (for tables too large to hold a gradient) trains the tables inside the
    backward pass, so they take other steps than the estimator's Adam: why Adam is the default."""
    results = run_job("sharded_adam_steps", tmp_path, args=("table_wise", "adagrad"))
    grads = {k: v for r in results for k, v in r["grads"].items()}
    assert not any(k.startswith("table ") for k in grads)  # no table gradient is ever materialised
    assert max(grads.values()) < 1e-6  # the dense parts still average exactly
    cosines = results[0]["cosines"]
    assert min(cosines["user_tower.user_emb.weight"], cosines["item_tower.item_emb.weight"]) < 0.99
