"""Int8DynamicLinear (error bound, int8 state, strict loads, copies) and fake quantization for QAT."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.compress.nets import batch, tiny_net
from turborec.compress import fake_quantize_tables, quantize_embeddings
from turborec.models.compact import Int4RowwiseEmbedding, Int8RowwiseEmbedding
from turborec.models.compact_linear import QMAX, Int8DynamicLinear, quantize_weight
from turborec.models.compact_qat import FakeQuantEmbedding, fake_quantize_rows


def linear(seed: int = 0, n_in: int = 48, n_out: int = 24) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out)


def test_weights_round_to_within_half_a_step_per_row() -> None:
    w = torch.randn(32, 40) * torch.rand(32, 1) * 10
    q, scale = quantize_weight(w)
    assert q.dtype == torch.int8 and int(q.abs().max()) <= QMAX
    err = (q.float() * scale.unsqueeze(1) - w).abs()
    assert bool((err <= scale.unsqueeze(1) / 2 + 1e-6).all())


def test_int8_layer_matches_the_float_layer_within_quantization_error() -> None:
    lin = linear()
    x = torch.randn(64, 48)
    layer = Int8DynamicLinear.from_float(lin)
    with torch.no_grad():
        ref, out = lin(x), layer(x)
    rel = float((out - ref).abs().max() / ref.abs().max())
    assert 0 < rel < 0.03
    assert layer.nbytes() == 24 * (48 + 4 + 4)
    assert torch.allclose(layer.dequantized_weight(), lin.weight, atol=float(lin.weight.detach().abs().max()) / QMAX)


def test_state_is_int8_tensors_and_a_strict_load_reproduces_outputs_exactly() -> None:
    layer = Int8DynamicLinear.from_float(linear())
    state = layer.state_dict()
    assert {k: v.dtype for k, v in state.items()} == {"qweight": torch.int8, "scale": torch.float32, "bias": torch.float32}
    fresh = Int8DynamicLinear(48, 24)
    fresh.load_state_dict(state, strict=True)
    x = torch.randn(16, 48)
    assert torch.equal(fresh(x), layer(x))
    assert torch.equal(copy.deepcopy(layer)(x), layer(x))


def test_bad_state_is_refused_by_a_strict_load() -> None:
    state = Int8DynamicLinear.from_float(linear()).state_dict()
    with pytest.raises(RuntimeError, match=r"qweight: expected torch\.int8"):
        Int8DynamicLinear(48, 24).load_state_dict({**state, "qweight": state["qweight"].float()})
    with pytest.raises(RuntimeError, match="Missing key"):
        Int8DynamicLinear(48, 24).load_state_dict({"qweight": state["qweight"], "scale": state["scale"]})
    with pytest.raises(RuntimeError, match="Unexpected key"):
        Int8DynamicLinear(48, 24).load_state_dict({**state, "extra": state["scale"]})
    no_bias = Int8DynamicLinear.from_float(nn.Linear(48, 24, bias=False))
    assert "bias" not in no_bias.state_dict()


def test_fake_quantized_rows_are_exactly_what_the_quantized_tables_return() -> None:
    torch.manual_seed(0)
    table = nn.Embedding(50, 13)
    with torch.no_grad():
        table.weight.mul_(torch.rand(50, 1) * 5)
    idx = torch.randint(0, 50, (7, 3))
    for kind, real in (("int8", Int8RowwiseEmbedding), ("int4", Int4RowwiseEmbedding)):
        fake = FakeQuantEmbedding.wrapping(table, kind)
        assert torch.allclose(fake(idx), real.from_float(table)(idx), atol=1e-5)


def test_rounding_passes_gradients_straight_through() -> None:
    rows = torch.randn(5, 8, requires_grad=True)
    fake_quantize_rows(rows, 4).sum().backward()
    assert rows.grad is not None and torch.equal(rows.grad, torch.ones(5, 8))


def test_fake_quantized_net_trains_and_converts_to_the_net_it_trained_as() -> None:
    net = tiny_net()
    fake = fake_quantize_tables(copy.deepcopy(net), "int4")
    assert isinstance(fake.item_emb, FakeQuantEmbedding) and fake.config.embeddings.spec("item").kind == "dense"
    opt = torch.optim.SGD(fake.parameters(), lr=0.1)
    fake(*batch()).pow(2).mean().backward()
    opt.step()
    assert not torch.equal(fake.item_emb.weight, net.item_emb.weight)  # trained, the original untouched
    real = quantize_embeddings(fake, "int4")
    with torch.no_grad():
        assert torch.allclose(real(*batch()), fake(*batch()), atol=1e-4)
