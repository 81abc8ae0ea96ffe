"""A trainable table that sees its own row-wise quantization error: quantization-aware fine-tuning.

:class:`FakeQuantEmbedding` is an ``nn.Embedding`` (same float ``weight``, same state dict) whose
lookups return each row as the int8 / int4 row-wise format of :mod:`compact_quant` would
reconstruct it. Gradients pass straight through the rounding (the straight-through estimator),
so training moves the float rows to where their quantized versions score well. Converting the
fine-tuned table with ``quantize_table`` then yields exactly the rows it trained with.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from turborec.errors import ConfigError
from turborec.models.compact_quant import SCALE_FLOOR

FAKE_QUANT_BITS = {"int8": 8, "int4": 4}


def fake_quantize_rows(rows: torch.Tensor, bits: int) -> torch.Tensor:
    """Each row (last axis) rounded to ``2**bits`` levels between its min and max, as the row-wise
    tables store it; the gradient is the identity (straight-through)."""
    levels = (1 << bits) - 1
    lo = rows.min(dim=-1, keepdim=True).values
    hi = rows.max(dim=-1, keepdim=True).values
    scale = (hi - lo) / levels
    scale = torch.where(scale > 0, scale, torch.full_like(scale, SCALE_FLOOR))
    q = torch.round((rows - lo) / scale).clamp(0, levels)
    deq = q * scale + lo
    return rows + (deq - rows).detach()


class FakeQuantEmbedding(nn.Embedding):
    """An ``nn.Embedding`` whose lookups are fake-quantized to ``kind`` ('int8' or 'int4')."""

    def __init__(self, num_embeddings: int, embedding_dim: int, kind: str = "int4") -> None:
        if kind not in FAKE_QUANT_BITS:
            raise ConfigError(f"fake quantization supports {sorted(FAKE_QUANT_BITS)}, got '{kind}'")
        super().__init__(num_embeddings, embedding_dim)
        self.kind = kind

    @classmethod
    def wrapping(cls, table: nn.Embedding, kind: str) -> FakeQuantEmbedding:
        """A fake-quantized table sharing ``table``'s weight Parameter (no copy)."""
        out = cls(table.num_embeddings, table.embedding_dim, kind)
        out.weight = table.weight
        return out

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return fake_quantize_rows(F.embedding(indices, self.weight), FAKE_QUANT_BITS[self.kind])

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, fake_quant={self.kind}"


__all__ = ["FAKE_QUANT_BITS", "FakeQuantEmbedding", "fake_quantize_rows"]
