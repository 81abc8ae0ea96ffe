"""Pooled embedding lookup (sum / mean over a bag of rows) for float and row-wise quantized tables.

A :class:`PooledTable` stores one table in the layout its lookup wants and pools ``indices``
[B, L] (-1 = padding, as ``models.embeddings.pooled_lookup``) into float rows [B, D]:

- :class:`FloatRows`: fp32 / fp16 / bf16 rows.
- :class:`Int8Rows`, :class:`Int4Rows`: the team's row-wise format (``models.compact_quant``:
  value = code * scale + bias; int4 codes two per byte, column 2j in the low nibble) packed
  FBGEMM-style with the scale and bias in front of each row's codes, so a lookup reads one
  contiguous run of bytes per row. :func:`pooled_table_from_module` converts the project's tables.

On CUDA with Triton installed the lookup is one fused Triton kernel (gather, dequantize, pool);
elsewhere it is the pure-PyTorch path below, which computes the same function and is what CPU
tests check against a float64 reference.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from turborec.backends.gpu._device import next_power_of_2, use_triton_for
from turborec.errors import ConfigError, DataError
from turborec.models.compact_quant import HalfEmbedding, Int4RowwiseEmbedding, Int8RowwiseEmbedding

POOLING_MODES = ("sum", "mean")
HEADER_BYTES = 16  # fp32 scale, fp32 bias, 8 bytes of padding so the codes start 16-byte aligned


@dataclass(frozen=True)
class KernelConfig:
    """Tile of the lookup kernel: bags per program, pooled indices per (unrolled) step, warps."""

    block_b: int
    block_l: int
    num_warps: int


def default_kernel_config(pooling: int, row_bytes: int) -> KernelConfig:
    """The tile measured best (within ~3%) on an H200 for 20M x 128 tables, fp32 to int4 (docs/gpu.md)."""
    if pooling <= 1:
        return KernelConfig(32, 1, 4)
    return KernelConfig(8 if row_bytes >= 256 else 16, min(next_power_of_2(pooling), 8), 4)


class PooledTable(ABC):
    """One embedding table laid out for pooled lookups."""

    kernel_format: ClassVar[int]
    num_embeddings: int
    embedding_dim: int

    @abstractmethod
    def rows(self, indices: torch.Tensor) -> torch.Tensor:
        """Dequantized float32 rows [..., D] for non-negative ``indices`` (the PyTorch path)."""

    @abstractmethod
    def _kernel_operands(self) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
        """(table, header view, row stride in elements, header stride in words, bytes a lookup reads per row)."""

    @abstractmethod
    def to(self, device: torch.device | str) -> PooledTable:
        """A copy on ``device``."""

    @property
    def device(self) -> torch.device:
        return self._kernel_operands()[0].device

    @property
    def row_bytes(self) -> int:
        return self._kernel_operands()[4]

    def nbytes(self) -> int:
        table = self._kernel_operands()[0]
        return table.numel() * table.element_size()

    def pooled(
        self,
        indices: torch.Tensor,
        mode: str = "sum",
        *,
        out_dtype: torch.dtype = torch.float32,
        use_triton: bool | None = None,
        config: KernelConfig | None = None,
        out: torch.Tensor | None = None,
        check_bounds: bool = True,
    ) -> torch.Tensor:
        """Pool the rows of each bag: ``indices`` int [B, L] (-1 = padding) -> ``out_dtype`` [B, D].

        ``mode`` is 'sum' or 'mean' (an empty bag gives zeros). ``use_triton`` None picks the fused
        kernel for CUDA tensors when Triton is installed; ``config`` overrides the kernel tile.
        ``check_bounds`` raises :class:`DataError` for an index >= num_embeddings (one device sync);
        without it the kernel treats such an index as padding.
        """
        if mode not in POOLING_MODES:
            raise ConfigError(f"pooling mode must be one of {POOLING_MODES}, got {mode!r}")
        if indices.dim() != 2 or indices.dtype not in (torch.int32, torch.int64):
            raise DataError(f"indices must be an int32/int64 tensor [B, L], got {indices.dtype} {tuple(indices.shape)}")
        if indices.device != self.device:
            raise DataError(f"indices are on {indices.device} but the table is on {self.device}")
        bags = indices.shape[0]
        if check_bounds and indices.numel() and int(indices.max()) >= self.num_embeddings:
            raise DataError(f"index {int(indices.max())} out of range for a table of {self.num_embeddings} rows")
        if out is None:
            out = torch.empty((bags, self.embedding_dim), dtype=out_dtype, device=indices.device)
        elif out.shape != (bags, self.embedding_dim) or out.stride(1) != 1:
            raise DataError(f"out must be a row-major [{bags}, {self.embedding_dim}] tensor, got {tuple(out.shape)}")
        if use_triton_for(indices, use_triton):
            self._pooled_triton(indices.contiguous(), mode == "mean", out, config)
        else:
            out.copy_(self._pooled_torch(indices, mode == "mean"))
        return out

    def _pooled_torch(self, indices: torch.Tensor, mean: bool) -> torch.Tensor:
        valid = indices >= 0
        if indices.numel() == 0:
            return torch.zeros((indices.shape[0], self.embedding_dim), device=indices.device)
        valid = valid & (indices < self.num_embeddings)
        idx = torch.where(valid, indices, 0).long()
        total = (self.rows(idx) * valid.unsqueeze(-1)).sum(dim=1)
        if mean:
            total = total / valid.sum(dim=1, keepdim=True).clamp_min(1)
        return total

    def _pooled_triton(self, indices: torch.Tensor, mean: bool, out: torch.Tensor, config: KernelConfig | None) -> None:
        from turborec.backends.gpu import _embedding_kernel

        table, header, row_stride, header_stride, row_bytes = self._kernel_operands()
        cfg = config or default_kernel_config(indices.shape[1], row_bytes)
        width = (self.embedding_dim + 1) // 2 if self.kernel_format == 2 else self.embedding_dim
        _embedding_kernel.launch(
            table, header, indices, out,
            dim=self.embedding_dim, num_rows=self.num_embeddings, row_stride=row_stride, header_stride=header_stride,
            fmt=self.kernel_format,
            mean=mean, block_b=cfg.block_b, block_l=cfg.block_l, block_d=next_power_of_2(width),
            num_warps=cfg.num_warps,
        )  # fmt: skip


class FloatRows(PooledTable):
    """fp32 / fp16 / bf16 rows [N, D]."""

    kernel_format = 0

    def __init__(self, weight: torch.Tensor) -> None:
        if weight.dim() != 2 or not weight.is_floating_point():
            raise DataError(f"weight must be a float tensor [N, D], got {weight.dtype} {tuple(weight.shape)}")
        self.weight = weight.detach().contiguous()
        self.num_embeddings, self.embedding_dim = (int(s) for s in self.weight.shape)

    def rows(self, indices: torch.Tensor) -> torch.Tensor:
        return self.weight[indices].float()

    def _kernel_operands(self) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
        w = self.weight
        return w, w, w.stride(0), 0, self.embedding_dim * w.element_size()

    def to(self, device: torch.device | str) -> FloatRows:
        return FloatRows(self.weight.to(device))


class _PackedRows(PooledTable):
    """Row-wise quantized rows packed as [scale f32, bias f32, 8 pad bytes, codes..., pad to 16 bytes]."""

    code_bytes: int

    def __init__(self, packed: torch.Tensor, dim: int) -> None:
        if packed.dtype != torch.uint8 or packed.dim() != 2 or packed.shape[1] % 16:
            raise DataError(f"packed rows must be uint8 [N, 16*m], got {packed.dtype} {tuple(packed.shape)}")
        self.packed = packed.contiguous()
        self.num_embeddings, self.embedding_dim = int(packed.shape[0]), int(dim)
        self.code_bytes = self._code_bytes(dim)
        if packed.shape[1] < HEADER_BYTES + self.code_bytes:
            raise DataError(f"packed rows of {packed.shape[1]} bytes cannot hold dim {dim}")

    @staticmethod
    @abstractmethod
    def _code_bytes(dim: int) -> int: ...

    @classmethod
    def _pack(cls, codes: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, dim: int) -> torch.Tensor:
        num, code_bytes = codes.shape
        if codes.dtype != torch.uint8 or code_bytes != cls._code_bytes(dim):
            raise DataError(f"codes must be uint8 [N, {cls._code_bytes(dim)}] for dim {dim}, got {codes.dtype} "
                            f"{tuple(codes.shape)}")  # fmt: skip
        if scale.shape != (num,) or bias.shape != (num,):
            raise DataError(f"scale and bias must be [{num}], got {tuple(scale.shape)} and {tuple(bias.shape)}")
        row_bytes = -(-(HEADER_BYTES + code_bytes) // 16) * 16
        packed = torch.zeros((num, row_bytes), dtype=torch.uint8, device=codes.device)
        words = packed.view(torch.float32)
        words[:, 0] = scale.to(torch.float32)
        words[:, 1] = bias.to(torch.float32)
        packed[:, HEADER_BYTES : HEADER_BYTES + code_bytes] = codes
        return packed

    def scale_bias(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        words = self.packed.view(torch.float32)
        return words[indices, 0], words[indices, 1]

    def codes(self) -> torch.Tensor:
        return self.packed[:, HEADER_BYTES : HEADER_BYTES + self.code_bytes]

    def _kernel_operands(self) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
        p = self.packed
        return p, p.view(torch.float32), p.stride(0), p.stride(0) // 4, 8 + self.code_bytes  # scale, bias, codes


class Int8Rows(_PackedRows):
    """int8 row-wise: uint8 ``q`` [N, D], fp32 ``scale`` [N], fp32 ``bias`` [N]; value = q * scale + bias."""

    kernel_format = 1

    @staticmethod
    def _code_bytes(dim: int) -> int:
        return dim

    @classmethod
    def from_rowwise(cls, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> Int8Rows:
        return cls(cls._pack(q, scale, bias, int(q.shape[1])), int(q.shape[1]))

    def rows(self, indices: torch.Tensor) -> torch.Tensor:
        scale, bias = self.scale_bias(indices)
        codes = self.packed[indices, HEADER_BYTES : HEADER_BYTES + self.embedding_dim]
        return codes.float() * scale.unsqueeze(-1) + bias.unsqueeze(-1)

    def to(self, device: torch.device | str) -> Int8Rows:
        return Int8Rows(self.packed.to(device), self.embedding_dim)


class Int4Rows(_PackedRows):
    """int4 row-wise: uint8 ``packed`` [N, ceil(D/2)] (column 2j low nibble, 2j+1 high), fp32 scale/bias [N]."""

    kernel_format = 2

    @staticmethod
    def _code_bytes(dim: int) -> int:
        return (dim + 1) // 2

    @classmethod
    def from_rowwise(cls, packed: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, dim: int) -> Int4Rows:
        return cls(cls._pack(packed, scale, bias, dim), dim)

    def rows(self, indices: torch.Tensor) -> torch.Tensor:
        scale, bias = self.scale_bias(indices)
        nibbles = self.packed[indices, HEADER_BYTES : HEADER_BYTES + self.code_bytes]
        levels = torch.stack([nibbles & 15, nibbles >> 4], dim=-1).flatten(-2)[..., : self.embedding_dim]
        return levels.float() * scale.unsqueeze(-1) + bias.unsqueeze(-1)

    def to(self, device: torch.device | str) -> Int4Rows:
        return Int4Rows(self.packed.to(device), self.embedding_dim)


def pooled_table_from_module(module: nn.Module) -> PooledTable:
    """The :class:`PooledTable` holding the same rows as an embedding-table module of the project
    (``nn.Embedding``, ``compact_quant.HalfEmbedding`` / ``Int8RowwiseEmbedding`` / ``Int4RowwiseEmbedding``)."""
    if isinstance(module, Int8RowwiseEmbedding):
        return Int8Rows.from_rowwise(module.q, module.scale, module.bias)
    if isinstance(module, Int4RowwiseEmbedding):
        return Int4Rows.from_rowwise(module.packed, module.scale, module.bias, module.embedding_dim)
    weight = getattr(module, "weight", None)
    if isinstance(module, (nn.Embedding, HalfEmbedding)) and isinstance(weight, torch.Tensor):
        return FloatRows(weight)
    raise ConfigError(f"no pooled-lookup layout for a {type(module).__name__} table "
                      "(supported: nn.Embedding, HalfEmbedding, Int8RowwiseEmbedding, Int4RowwiseEmbedding)")  # fmt: skip


__all__ = [
    "FloatRows",
    "Int4Rows",
    "Int8Rows",
    "KernelConfig",
    "PooledTable",
    "default_kernel_config",
    "pooled_table_from_module",
]
