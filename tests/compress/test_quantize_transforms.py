"""quantize_embeddings and quantize_mlp_dynamic on a network built the lead's way (config + EmbeddingPlan)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.compress.nets import batch, rebuild, through_artifact, tiny_net
from turborec.compress import (
    finish_load,
    model_nbytes,
    prepare_for_load,
    prune_rows_by_frequency,
    quantize_embeddings,
    quantize_mlp_dynamic,
    transform_records,
)
from turborec.errors import ConfigError
from turborec.models.compact import Int4RowwiseEmbedding, Int8RowwiseEmbedding, PrunedRowEmbedding
from turborec.models.compact_linear import Int8DynamicLinear


def scores(net: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return net(*batch())


@pytest.mark.parametrize("kind,tol", [("fp16", 2e-3), ("bf16", 2e-2), ("int8", 2e-2), ("int4", 0.3)])
def test_quantized_net_saves_and_loads_through_its_plan(kind: str, tol: float, tmp_path: Path) -> None:
    net = tiny_net()
    before = scores(net)
    q = quantize_embeddings(net, kind)
    assert type(q) is type(net)
    assert q.config.embeddings.spec("user").kind == kind and q.config.embeddings.spec("item").kind == kind
    assert isinstance(net.item_emb, nn.Embedding)  # the original is untouched
    assert model_nbytes(q) < model_nbytes(net)
    after = scores(q)
    rel = float((after - before).abs().max() / before.abs().max())
    assert 0 < rel < tol
    # the loader's path: a fresh net from the saved config, strict load of the safetensors state
    fresh = rebuild(q)
    fresh.load_state_dict(through_artifact(q.state_dict(), tmp_path / "a"), strict=True)
    assert torch.equal(scores(fresh.eval()), after)


def test_only_named_tables_change() -> None:
    net = tiny_net()
    q = quantize_embeddings(net, "int4", tables=["item"])
    assert isinstance(q.item_emb, Int4RowwiseEmbedding) and isinstance(q.user_emb, nn.Embedding)
    assert q.config.embeddings.spec("user").kind == "dense"
    assert transform_records(q) == [{"transform": "quantize_embeddings", "kind": "int4", "tables": ["item"]}]


def test_bad_requests_fail_before_any_work() -> None:
    net = tiny_net()
    with pytest.raises(ConfigError, match="unknown kind 'int2'"):
        quantize_embeddings(net, "int2")
    with pytest.raises(ConfigError, match=r"no table named \['items'\]"):
        quantize_embeddings(net, "int8", tables=["items"])
    q = quantize_embeddings(net, "int8", tables=["item"])
    with pytest.raises(ConfigError, match="table 'item' int4: it is a 'int8' table"):
        quantize_embeddings(q, "int4", inplace=True)
    # the failed in-place call converted nothing, not even the dense user table it could have done
    assert isinstance(q.user_emb, nn.Embedding) and isinstance(q.item_emb, Int8RowwiseEmbedding)
    untagged = tiny_net()
    del untagged.user_emb.turborec_table_name, untagged.item_emb.turborec_table_name
    with pytest.raises(ConfigError, match="no table built through its EmbeddingPlan"):
        quantize_embeddings(untagged, "int8")


def test_pruned_rows_then_quantized(tmp_path: Path) -> None:
    net = tiny_net()
    counts = {"item": torch.arange(60).numpy()}
    pruned = prune_rows_by_frequency(net, counts, keep=0.25)
    q = quantize_embeddings(pruned, "int8", tables=["item"])
    assert isinstance(q.item_emb, PrunedRowEmbedding) and isinstance(q.item_emb.table, Int8RowwiseEmbedding)
    assert q.config.embeddings.spec("item").params["inner"] == {"kind": "int8", "params": {}}
    fresh = rebuild(q)
    fresh.load_state_dict(through_artifact(q.state_dict(), tmp_path / "a"), strict=True)
    assert torch.equal(scores(fresh.eval()), scores(q))
    with pytest.raises(ConfigError, match="already 'int8'"):
        quantize_embeddings(q, "int4", tables=["item"])


def test_dynamic_int8_mlp_saves_as_int8_tensors_and_replays_its_structure(tmp_path: Path) -> None:
    net = tiny_net(hidden=(64, 64))
    q = quantize_mlp_dynamic(net)
    linears = [m for m in q.mlp if hasattr(m, "in_features")]
    assert linears and all(isinstance(m, Int8DynamicLinear) for m in linears)
    rel = float((scores(q) - scores(net)).abs().max() / scores(net).abs().max())
    assert 0 < rel < 0.05
    linear_bytes = sum(m.weight.numel() * 3 for m in net.mlp if isinstance(m, nn.Linear))  # 4 -> 1 byte each
    scale_bytes = sum(m.out_features * 4 for m in net.mlp if isinstance(m, nn.Linear))
    assert model_nbytes(net) - model_nbytes(q) == linear_bytes - scale_bytes
    state = q.state_dict()
    assert state["mlp.0.qweight"].dtype == torch.int8 and "mlp.0.weight" not in state
    records = transform_records(q)
    assert records[-1] == {"transform": "quantize_mlp_dynamic", "layers": ["mlp.0", "mlp.2", "mlp.4"]}
    # artifact path: int8 tensors are saved; the loader swaps the layers first, then loads strictly
    fresh = rebuild(net)
    prepare_for_load(fresh, records)
    fresh.load_state_dict(through_artifact(state, tmp_path / "a"), strict=True)
    finish_load(fresh, records)
    assert torch.equal(scores(fresh.eval()), scores(q))
    assert transform_records(fresh) == records


def test_dynamic_quantization_options_are_checked() -> None:
    net = tiny_net()
    with pytest.raises(ConfigError, match=r"no nn.Linear at \['mlp.9'\]"):
        quantize_mlp_dynamic(net, layers=["mlp.9"])
    only_first = quantize_mlp_dynamic(net, layers=["mlp.0"])
    assert type(only_first.mlp[2]) is nn.Linear and isinstance(only_first.mlp[0], Int8DynamicLinear)
    with pytest.raises(ConfigError, match=r"no nn\.Linear"):  # already int8: nothing left to quantize there
        quantize_mlp_dynamic(only_first, layers=["mlp.0"])


def test_tables_that_quantization_cannot_shrink_are_left_out_or_refused() -> None:
    net = tiny_net(dim=2)  # 2 floats = 8 bytes a row; int8 needs 2 + 8
    with pytest.raises(ConfigError, match="no table of TinyNet gets smaller as int8"):
        quantize_embeddings(net, "int8")
    with pytest.raises(ConfigError, match="table 'item' is 2 wide, which int4 cannot shrink"):
        quantize_embeddings(net, "int4", tables=["item"])
    half = quantize_embeddings(net, "fp16")  # 4 bytes a row instead of 8
    assert half.config.embeddings.spec("item").kind == "fp16"


@pytest.mark.parametrize("inplace", [False, True])
def test_every_alias_of_a_table_is_swapped(inplace: bool) -> None:
    net = tiny_net()
    net.item_alias = net.item_emb  # a second path to the same table, as two towers share the item table
    q = quantize_embeddings(net, "int8", inplace=inplace)
    assert (q is net) == inplace
    assert isinstance(q.item_emb, Int8RowwiseEmbedding) and q.item_alias is q.item_emb
