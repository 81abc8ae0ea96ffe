"""Pooled lookup, PyTorch path (runs on CPU in CI): every table layout against a float64 reference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from turborec.backends.gpu import FloatRows, Int4Rows, Int8Rows, pooled_table_from_module
from turborec.errors import ConfigError, DataError
from turborec.models.compact_quant import HalfEmbedding, Int4RowwiseEmbedding, Int8RowwiseEmbedding, quantize_rows


def reference_pool(rows64: torch.Tensor, indices: torch.Tensor, mode: str) -> torch.Tensor:
    """float64 sum / mean of table rows per bag (-1 = padding), written independently of the code under test."""
    out = torch.zeros(indices.shape[0], rows64.shape[1], dtype=torch.float64)
    for b in range(indices.shape[0]):
        picked = [int(i) for i in indices[b] if i >= 0]
        if picked:
            out[b] = rows64[picked].sum(0)
            if mode == "mean":
                out[b] /= len(picked)
    return out


def random_bags(gen: torch.Generator, num: int, bags: int, pooling: int) -> torch.Tensor:
    idx = torch.randint(0, num, (bags, pooling), generator=gen)
    pad = torch.rand((bags, pooling), generator=gen) < 0.2
    idx[pad] = -1
    idx[0] = -1  # an empty bag
    return idx


def dequantized(codes: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, dim: int, bits: int) -> torch.Tensor:
    if bits == 4:
        codes = torch.stack([codes & 15, codes >> 4], dim=-1).flatten(-2)[:, :dim]
    return codes.double() * scale.double()[:, None] + bias.double()[:, None]


@pytest.mark.parametrize("dim", [16, 13, 128])
@pytest.mark.parametrize("pooling", [1, 7])
@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_every_layout_matches_float64(gen: torch.Generator, dim: int, pooling: int, mode: str) -> None:
    num = 300
    weight = torch.randn(num, dim, generator=gen)
    q8, s8, b8 = quantize_rows(weight, 8)
    q4, s4, b4 = quantize_rows(weight, 4)
    layouts = [
        (FloatRows(weight), weight.double(), 1e-6),
        (FloatRows(weight.half()), weight.half().double(), 1e-6),
        (FloatRows(weight.bfloat16()), weight.bfloat16().double(), 1e-6),
        (Int8Rows.from_rowwise(q8, s8, b8), dequantized(q8, s8, b8, dim, 8), 1e-6),
        (Int4Rows.from_rowwise(q4, s4, b4, dim), dequantized(q4, s4, b4, dim, 4), 1e-6),
    ]
    idx = random_bags(gen, num, 40, pooling)
    for table, rows64, tol in layouts:
        ref = reference_pool(rows64, idx, mode)
        out = table.pooled(idx, mode)
        assert out.shape == (40, dim) and out.dtype == torch.float32
        err = (out.double() - ref).norm() / ref.norm()
        assert err < tol, (type(table).__name__, err)
        assert torch.all(out[0] == 0)  # the empty bag


def test_quantized_tables_are_close_to_the_float_table(gen: torch.Generator) -> None:
    weight = torch.randn(200, 32, generator=gen)
    idx = random_bags(gen, 200, 30, 5)
    exact = reference_pool(weight.double(), idx, "sum")
    for bits, table_cls, tol in ((8, Int8Rows, 0.02), (4, Int4Rows, 0.3)):
        codes, scale, bias = quantize_rows(weight, bits)
        table = (
            table_cls.from_rowwise(codes, scale, bias, 32) if bits == 4 else Int8Rows.from_rowwise(codes, scale, bias)
        )
        err = (table.pooled(idx).double() - exact).norm() / exact.norm()
        assert 0 < err < tol, (bits, err)


def test_int4_low_nibble_is_the_even_column() -> None:
    packed = torch.tensor([[0x21, 0x03]], dtype=torch.uint8)  # columns 1, 2, 3 (dim 3: the last high nibble unused)
    table = Int4Rows.from_rowwise(packed, torch.tensor([1.0]), torch.tensor([0.5]), dim=3)
    out = table.pooled(torch.tensor([[0]]))
    assert out.tolist() == [[1.5, 2.5, 3.5]]


def test_int8_header_holds_scale_and_bias() -> None:
    q = torch.tensor([[0, 255], [10, 20]], dtype=torch.uint8)
    table = Int8Rows.from_rowwise(q, torch.tensor([0.5, 2.0]), torch.tensor([-1.0, 3.0]))
    assert table.packed.shape[1] % 16 == 0
    out = table.pooled(torch.tensor([[0, 1], [1, -1]]))
    assert out.tolist() == [[-1.0 + 23.0, 126.5 + 43.0], [23.0, 43.0]]


def test_from_module_matches_the_modules_own_lookup(gen: torch.Generator) -> None:
    dense = nn.Embedding(100, 24)
    nn.init.normal_(dense.weight, generator=gen)
    modules = [dense, HalfEmbedding.from_float(dense), Int8RowwiseEmbedding.from_float(dense),
               Int4RowwiseEmbedding.from_float(dense)]  # fmt: skip
    idx = random_bags(gen, 100, 20, 4)
    for module in modules:
        with torch.no_grad():
            rows = module(idx.clamp_min(0)).double() * (idx >= 0).unsqueeze(-1)
        expected = rows.sum(1)
        out = pooled_table_from_module(module).pooled(idx)
        err = (out.double() - expected).norm() / expected.norm()
        assert err < 1e-6, (type(module).__name__, err)


def test_bad_input_raises_turborec_errors(gen: torch.Generator) -> None:
    table = FloatRows(torch.randn(10, 4, generator=gen))
    with pytest.raises(DataError, match="out of range"):
        table.pooled(torch.tensor([[3, 10]]))
    with pytest.raises(ConfigError, match="pooling mode"):
        table.pooled(torch.tensor([[1]]), "max")
    with pytest.raises(DataError, match="int32/int64"):
        table.pooled(torch.tensor([[1.0]]))
    with pytest.raises(ConfigError, match="use_triton=True"):
        table.pooled(torch.tensor([[1]]), use_triton=True)
    with pytest.raises(ConfigError, match="no pooled-lookup layout"):
        pooled_table_from_module(nn.Linear(3, 3))
    # without the host-side check an out-of-range index is treated as padding, never read
    assert table.pooled(torch.tensor([[10]]), check_bounds=False).abs().sum() == 0
