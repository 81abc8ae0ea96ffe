"""model_nbytes, and the resident memory a fresh process pays to load a table artifact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.compress.nets import tiny_net
from turborec.compress import (
    measure_load_rss,
    model_nbytes,
    net_memory,
    quantize_embeddings,
    quantize_mlp_dynamic,
    save_table_artifact,
)
from turborec.errors import ArtifactError, ConfigError
from turborec.models.compact import quantize_table

LOADER = "turborec.compress.memory:load_table_artifact"


def test_model_nbytes_counts_parameters_buffers_and_packed_weights() -> None:
    net = tiny_net(dim=8, hidden=(32, 16))  # 40 users, 60 items
    tables = (40 + 60) * 8 * 4
    mlp_weights = (16 * 32 + 32 * 16 + 16 * 8) * 4
    mlp_biases = (32 + 16 + 8) * 4
    assert model_nbytes(net) == tables + mlp_weights + mlp_biases
    q = quantize_embeddings(net, "int8")
    assert model_nbytes(q) == (40 + 60) * (8 + 8) + mlp_weights + mlp_biases
    dyn = quantize_mlp_dynamic(net)  # int8 weights plus an fp32 scale per output row
    assert model_nbytes(dyn) == tables + mlp_weights // 4 + (32 + 16 + 8) * 4 + mlp_biases
    mem = net_memory(dyn)
    assert (mem.tables, mem.layers, mem.data) == (tables, model_nbytes(dyn) - tables, 0)


def test_integer_buffers_outside_tables_are_data_not_weights() -> None:
    net = tiny_net(dim=8, hidden=(32, 16))
    net.register_buffer("item_tokens", torch.zeros(60, 3, dtype=torch.long))
    net.register_buffer("log_q", torch.zeros(60))
    mem = net_memory(net)
    assert mem.data == 60 * 3 * 8
    assert mem.model == model_nbytes(tiny_net(dim=8, hidden=(32, 16))) + 60 * 4
    assert mem.total == model_nbytes(net)


def test_a_shared_table_is_counted_once() -> None:
    net = tiny_net()
    net.extra = net.item_emb  # a second path to the same table, as two towers share the item table
    assert model_nbytes(net) == model_nbytes(tiny_net())


@pytest.mark.slow  # three fresh processes loading 100 MB tables: ~15 s on an idle core
def test_resident_memory_of_a_fresh_load_follows_the_storage(tmp_path: Path) -> None:
    torch.manual_seed(0)
    dense = nn.Embedding(400_000, 64)
    added = {}
    for kind in ("dense", "int8", "int4"):
        table = dense if kind == "dense" else quantize_table(dense, kind)
        save_table_artifact(tmp_path / kind, table)
        mem = measure_load_rss(tmp_path / kind, LOADER)
        nbytes = model_nbytes(table)
        # what stays resident is the table plus a few MB of loader overhead, not a float copy
        assert nbytes <= mem.added + 2**20 and mem.added < nbytes + 16 * 2**20, (kind, mem, nbytes)
        assert mem.peak >= mem.after >= mem.before > 0
        added[kind] = mem.added
    assert added["int8"] < 0.4 * added["dense"]  # 28.8 MB vs 102.4 MB of tensors
    assert added["int4"] < 0.7 * added["int8"]  # 16.0 MB


def test_measurement_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="loader must look like"):
        measure_load_rss(tmp_path, "turborec.compress.memory.load_table_artifact")
    with pytest.raises(ArtifactError, match="no artifact here"):
        measure_load_rss(tmp_path / "missing", LOADER)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match=r"fresh process failed: .*not an artifact"):
        measure_load_rss(tmp_path / "empty", LOADER)
