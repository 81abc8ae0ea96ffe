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
