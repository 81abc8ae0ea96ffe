"""fp16 / bf16 / int8 / int4 tables: the shared row-wise format, error bounds, exact lookups, sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from turborec.errors import ConfigError
from turborec.models.compact import (
    HalfEmbedding,
    Int4RowwiseEmbedding,
    Int8RowwiseEmbedding,
    QREmbedding,
    quantize_table,
)
from turborec.models.embeddings import table_nbytes


def random_table(num: int = 500, dim: int = 33, seed: int = 0) -> nn.Embedding:
    """Rows with very different scales and offsets, one constant row and one all-zero row."""
    g = torch.Generator().manual_seed(seed)
    emb = nn.Embedding(num, dim)
    with torch.no_grad():
        w = torch.randn(num, dim, generator=g) * torch.exp(torch.randn(num, 1, generator=g) * 2)
        w += torch.randn(num, 1, generator=g) * 3
        w[7] = 1.25
        w[8] = 0.0
        emb.weight.copy_(w)
    return emb


def reference_codes(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The documented format, written independently in numpy: codes (int8 bytes or packed int4), scale, bias."""
    levels = (1 << bits) - 1
    bias = w.min(axis=1)
    scale = (w.max(axis=1) - bias) / np.float32(levels)
    scale = np.where(scale == 0, np.float32(1e-8), scale).astype(np.float32)
    q = np.clip(np.round((w - bias[:, None]) / scale[:, None]), 0, levels).astype(np.uint8)
    if bits == 8:
        return q, scale, bias
    if q.shape[1] % 2:
        q = np.concatenate([q, np.zeros((q.shape[0], 1), np.uint8)], axis=1)
    return (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8), scale, bias


@pytest.mark.parametrize("cls,bits", [(Int8RowwiseEmbedding, 8), (Int4RowwiseEmbedding, 4)])
def test_codes_follow_the_shared_format(cls: type, bits: int) -> None:
    dense = random_table()
    table = cls.from_float(dense)
    codes, scale, bias = reference_codes(dense.weight.detach().numpy(), bits)
    stored = table.q if bits == 8 else table.packed
    np.testing.assert_array_equal(stored.numpy(), codes)
    np.testing.assert_array_equal(table.scale.numpy(), scale)
    np.testing.assert_array_equal(table.bias.numpy(), bias)
    assert stored.dtype == torch.uint8 and table.scale.dtype == torch.float32 and table.bias.dtype == torch.float32
    assert stored.shape == (500, 33 if bits == 8 else 17)


@pytest.mark.parametrize("cls,levels", [(Int8RowwiseEmbedding, 255), (Int4RowwiseEmbedding, 15)])
def test_dequantization_error_is_at_most_half_a_step_per_row(cls: type, levels: int) -> None:
    dense = random_table()
    w = dense.weight.detach()
    table = cls.from_float(dense)
    err = (table.dequantize() - w).abs()
    scale = table.scale.unsqueeze(1)
    # half a quantization step, plus float32 rounding of (w - min) / scale and of q * scale + min
    slack = 4 * torch.finfo(torch.float32).eps * w.abs().amax(dim=1, keepdim=True)
    assert bool((err <= scale / 2 + slack).all())
    # the bound is tight: some row really loses close to half a step
    assert float((err / scale).max()) > 0.45
    # every non-constant row uses the full range of levels
    lv = table.dequantize().sub(table.bias.unsqueeze(1)).div(scale).round()
    varied = w.amax(1) > w.amin(1)
    assert bool((lv.amin(1)[varied] == 0).all()) and bool((lv.amax(1)[varied] == levels).all())
    # constant rows come back exactly
    assert torch.equal(table.dequantize()[7], w[7]) and torch.equal(table.dequantize()[8], w[8])


@pytest.mark.parametrize("kind", ["fp16", "bf16", "int8", "int4"])
def test_lookup_equals_dequantized_table_lookup_exactly(kind: str) -> None:
    table = quantize_table(random_table(), kind)
    idx = torch.randint(0, 500, (4, 7), generator=torch.Generator().manual_seed(3))
    out = table(idx)
    assert out.dtype == torch.float32 and out.shape == (4, 7, 33)
    assert torch.equal(out, table.dequantize()[idx])


@pytest.mark.parametrize("kind,rel", [("fp16", 2.0**-11), ("bf16", 2.0**-8)])
def test_half_tables_round_to_nearest(kind: str, rel: float) -> None:
    dense = random_table()
    table = quantize_table(dense, kind)
    assert isinstance(table, HalfEmbedding)
    w = dense.weight.detach()
    err = (table.dequantize() - w).abs()
    assert bool((err <= rel * w.abs() + 1e-30).all())
    assert table_nbytes(table) == 500 * 33 * 2
    assert not list(table.parameters())  # inference storage: nothing for an optimizer to update


@pytest.mark.parametrize("dim", [64, 33])
def test_resident_size_shrinks_to_a_quarter_and_an_eighth(dim: int) -> None:
    num = 2000
    dense = random_table(num, dim)
    int8 = Int8RowwiseEmbedding.from_float(dense)
    int4 = Int4RowwiseEmbedding.from_float(dense)
    fp32 = table_nbytes(dense)
    per_row = 8  # fp32 scale + fp32 bias
    assert table_nbytes(int8) == num * dim + num * per_row
    assert table_nbytes(int4) == num * math.ceil(dim / 2) + num * per_row
    if dim == 64:
        assert table_nbytes(int8) / fp32 == pytest.approx(0.25 + per_row / (4 * dim))  # 0.28125
        assert table_nbytes(int4) / fp32 == pytest.approx(0.125 + per_row / (4 * dim))  # 0.15625
    # no float copy of the table is kept anywhere in the module
    for t in [*int8.buffers(), *int4.buffers()]:
        assert t.numel() * t.element_size() <= num * dim
    assert not list(int8.parameters()) and not list(int4.parameters())


def test_only_dense_tables_can_be_quantized() -> None:
    int8 = Int8RowwiseEmbedding.from_float(random_table())
    with pytest.raises(ConfigError, match=r"dense nn\.Embedding"):
        Int4RowwiseEmbedding.from_float(int8)
    with pytest.raises(ConfigError, match=r"dense nn\.Embedding"):
        quantize_table(QREmbedding(50, 4, collisions=5), "int8")
    with pytest.raises(ConfigError, match="unknown quantized table kind 'int2'"):
        quantize_table(random_table(), "int2")
