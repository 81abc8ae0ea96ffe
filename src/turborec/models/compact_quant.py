"""Reduced-precision embedding tables: fp16 / bf16 storage and int8 / int4 row-wise quantization.

The row-wise format is shared by compression, the GPU kernels and the edge runtime:

- int8: ``q`` uint8 [num, dim], ``scale`` fp32 [num], ``bias`` fp32 [num]; value = q * scale + bias,
  with bias = row min and scale = (max - min) / 255 (a constant row gets scale 1e-8).
- int4: levels 0..15, scale = (max - min) / 15, ``packed`` uint8 [num, ceil(dim / 2)] holding
  column 2j in the low nibble and column 2j+1 in the high nibble (an odd dim pads a zero nibble).

Tables keep only the quantized rows as buffers (no float copy) and dequantize the rows a
lookup gathers, so the resident size really shrinks. Lookups are gathers, bit operations and
arithmetic only, which export to ONNX.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from turborec.errors import ConfigError
from turborec.models.embeddings import EmbeddingSpec

SCALE_FLOOR = 1e-8  # scale of a constant row, so that q * scale + bias stays exact and finite
_CHUNK_ROWS = 1 << 16  # rows quantized at a time, so quantizing a big table needs little scratch memory


def _dense_weight(module: nn.Module, kind: str) -> torch.Tensor:
    if not isinstance(module, nn.Embedding):
        raise ConfigError(
            f"{kind} tables are made from a dense nn.Embedding, got {type(module).__name__} "
            f"(quantize the original float table, not an already compressed one)"
        )
    return module.weight.detach()


def _row_range(w: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    lo = w.min(dim=1).values
    hi = w.max(dim=1).values
    scale = (hi - lo) / levels
    scale = torch.where(scale > 0, scale, torch.full_like(scale, SCALE_FLOOR))
    return scale, lo


def quantize_rows(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row-wise quantize a float [num, dim] matrix to (codes uint8, scale fp32 [num], bias fp32 [num]).

    ``bits`` is 8 (codes [num, dim]) or 4 (codes packed two per byte, [num, ceil(dim / 2)]).
    """
    if bits not in (4, 8):
        raise ConfigError(f"row-wise quantization supports 4 or 8 bits, got {bits}")
    if weight.dim() != 2:
        raise ConfigError(f"row-wise quantization needs a 2-D table, got shape {tuple(weight.shape)}")
    levels = (1 << bits) - 1
    num, dim = weight.shape
    width = dim if bits == 8 else (dim + 1) // 2
    codes = torch.empty((num, width), dtype=torch.uint8)
    scale = torch.empty(num, dtype=torch.float32)
    bias = torch.empty(num, dtype=torch.float32)
    for start in range(0, num, _CHUNK_ROWS):
        w = weight[start : start + _CHUNK_ROWS].detach().to(torch.float32)
        s, b = _row_range(w, levels)
        q = torch.round((w - b.unsqueeze(1)) / s.unsqueeze(1)).clamp_(0, levels).to(torch.uint8)
        if bits == 4:
            if dim % 2:
                q = F.pad(q, (0, 1))
            q = q[:, 0::2] | (q[:, 1::2] << 4)
        codes[start : start + len(w)] = q
        scale[start : start + len(w)] = s
        bias[start : start + len(w)] = b
    return codes, scale, bias


def unpack_int4(packed: torch.Tensor, dim: int) -> torch.Tensor:
    """uint8 [..., ceil(dim / 2)] -> int32 levels [..., dim] (low nibble first).

    Works on int32: the ONNX exporter types uint8 bit-op constants as int8, which ONNX Runtime rejects.
    """
    wide = packed.to(torch.int32)
    low = wide & 15
    high = wide >> 4
    levels = torch.stack((low, high), dim=-1).flatten(-2)
    return levels if levels.shape[-1] == dim else levels[..., :dim]


def dequantize_codes(levels: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """value = level * scale + bias, with scale/bias broadcast over the last axis."""
    return levels.to(torch.float32) * scale.unsqueeze(-1) + bias.unsqueeze(-1)


class HalfEmbedding(nn.Module):
    """A table stored in fp16 or bf16; lookups gather half rows and return float32.

    The weight is a buffer: the table is for inference (fine-tune the dense table instead).
    """

    KINDS: ClassVar[dict[str, torch.dtype]] = {"fp16": torch.float16, "bf16": torch.bfloat16}

    def __init__(self, num_embeddings: int, embedding_dim: int, kind: str = "fp16") -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ConfigError(f"half-precision table kind must be one of {sorted(self.KINDS)}, got '{kind}'")
        self.kind = kind
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.weight: torch.Tensor
        self.register_buffer("weight", torch.zeros(num_embeddings, embedding_dim, dtype=self.KINDS[kind]))

    @classmethod
    def from_float(cls, module: nn.Module, kind: str = "fp16") -> HalfEmbedding:
        w = _dense_weight(module, kind)
        out = cls(w.shape[0], w.shape[1], kind)
        out.weight.copy_(w)
        return out

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices, self.weight).to(torch.float32)

    def dequantize(self) -> torch.Tensor:
        return self.weight.to(torch.float32)

    def to_spec(self) -> EmbeddingSpec:
        return EmbeddingSpec(self.kind, {})

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, kind={self.kind}"


class Int8RowwiseEmbedding(nn.Module):
    """Row-wise int8 table (buffers ``q``, ``scale``, ``bias``); dequantizes only the gathered rows."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.q: torch.Tensor
        self.scale: torch.Tensor
        self.bias: torch.Tensor
        self.register_buffer("q", torch.zeros(num_embeddings, embedding_dim, dtype=torch.uint8))
        self.register_buffer("scale", torch.full((num_embeddings,), SCALE_FLOOR))
        self.register_buffer("bias", torch.zeros(num_embeddings))

    @classmethod
    def from_float(cls, module: nn.Module) -> Int8RowwiseEmbedding:
        w = _dense_weight(module, "int8")
        out = cls(w.shape[0], w.shape[1])
        q, s, b = quantize_rows(w, 8)
        out.q.copy_(q)
        out.scale.copy_(s)
        out.bias.copy_(b)
        return out

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return dequantize_codes(F.embedding(indices, self.q), self.scale[indices], self.bias[indices])

    def dequantize(self) -> torch.Tensor:
        """The whole table as float32 (for tests and analysis; lookups never call this)."""
        return dequantize_codes(self.q, self.scale, self.bias)

    def to_spec(self) -> EmbeddingSpec:
        return EmbeddingSpec("int8", {})

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class Int4RowwiseEmbedding(nn.Module):
    """Row-wise int4 table (buffers ``packed``, ``scale``, ``bias``); unpacks only the gathered rows."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.packed: torch.Tensor
        self.scale: torch.Tensor
        self.bias: torch.Tensor
        self.register_buffer("packed", torch.zeros(num_embeddings, (embedding_dim + 1) // 2, dtype=torch.uint8))
        self.register_buffer("scale", torch.full((num_embeddings,), SCALE_FLOOR))
        self.register_buffer("bias", torch.zeros(num_embeddings))

    @classmethod
    def from_float(cls, module: nn.Module) -> Int4RowwiseEmbedding:
        w = _dense_weight(module, "int4")
        out = cls(w.shape[0], w.shape[1])
        packed, s, b = quantize_rows(w, 4)
        out.packed.copy_(packed)
        out.scale.copy_(s)
        out.bias.copy_(b)
        return out

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        levels = unpack_int4(F.embedding(indices, self.packed), self.embedding_dim)
        return dequantize_codes(levels, self.scale[indices], self.bias[indices])

    def dequantize(self) -> torch.Tensor:
        return dequantize_codes(unpack_int4(self.packed, self.embedding_dim), self.scale, self.bias)

    def to_spec(self) -> EmbeddingSpec:
        return EmbeddingSpec("int4", {})

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


QUANTIZED_KINDS: dict[str, type[nn.Module]] = {
    "fp16": HalfEmbedding,
    "bf16": HalfEmbedding,
    "int8": Int8RowwiseEmbedding,
    "int4": Int4RowwiseEmbedding,
}


def quantize_table(module: nn.Module, kind: str) -> nn.Module:
    """A dense ``nn.Embedding`` stored as ``kind`` ('fp16', 'bf16', 'int8', 'int4')."""
    if kind in HalfEmbedding.KINDS:
        return HalfEmbedding.from_float(module, kind)
    if kind == "int8":
        return Int8RowwiseEmbedding.from_float(module)
    if kind == "int4":
        return Int4RowwiseEmbedding.from_float(module)
    raise ConfigError(f"unknown quantized table kind '{kind}' (known: {', '.join(QUANTIZED_KINDS)})")


__all__ = [
    "QUANTIZED_KINDS",
    "SCALE_FLOOR",
    "HalfEmbedding",
    "Int4RowwiseEmbedding",
    "Int8RowwiseEmbedding",
    "dequantize_codes",
    "quantize_rows",
    "quantize_table",
    "unpack_int4",
]
