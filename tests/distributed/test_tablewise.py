"""Table-wise sharding on plain torch.distributed (gloo here, NCCL on GPUs): same numbers as one process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.distributed.conftest import run_job
from turborec.distributed.tablewise import assign_tables
from turborec.errors import ConfigError


def test_assign_tables_balances_table_counts_then_rows() -> None:
    owner = assign_tables([1000, 10, 500, 20, 30], 2)
    assert sorted(owner.count(r) for r in range(2)) == [2, 3]
    assert owner[0] != owner[2]  # the two largest tables land on different ranks
    assert assign_tables([5, 6, 7], 1) == [0, 0, 0]


def test_bad_owner_list_is_a_config_error() -> None:
    import torch

    from turborec.distributed.tablewise import TablewiseEmbeddings

    with pytest.raises(ConfigError, match="owners"):
        TablewiseEmbeddings([3, 4], 2, rank=0, world_size=2, owner=[0, 2], device=torch.device("cpu"))


@pytest.mark.distributed  # gloo teardown occasionally aborts a rank after the work is done (SIGABRT); opt-in
def test_two_ranks_match_one_process_forward_and_sgd_step(tmp_path: Path) -> None:
    results = run_job("tablewise_step", tmp_path)
    for r in results:
        assert r["forward_diff"] < 1e-5
        assert r["table_diff"] < 1e-5  # gradients of the mean loss reached each row's owner
        assert r["dense_diff"] < 1e-5  # DDP averaged the dense gradients
        assert r["moved"] > 1e-3  # ... and the step really changed the tables
    owners = results[0]["owner"]
    assert results[1]["owner"] == owners
    assert set(results[0]["local_tables"]).isdisjoint(results[1]["local_tables"])
    assert sorted(results[0]["local_tables"] + results[1]["local_tables"]) == list(range(len(owners)))
    # each rank holds only its tables: rows held add up to the whole, none holds it all
    assert results[0]["local_rows"] + results[1]["local_rows"] == results[0]["total_rows"]
    assert all(0 < r["local_rows"] < r["total_rows"] for r in results)
