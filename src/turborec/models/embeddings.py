"""Embedding tables as injectable parts (spotlight's pattern, TorchRec's typed specs).

Every network takes an :class:`EmbeddingPlan` and asks it for each of its tables
by name, so compression can swap a dense table for an int8 row-wise, QR or hashed
one without touching the network or its training code.

Contract for a table module: ``forward(indices: LongTensor[...]) -> Tensor[..., dim]``
(indices >= 0; callers mask padding themselves) and attributes ``num_embeddings``
and ``embedding_dim``. ``nn.Embedding`` satisfies it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from turborec.errors import ConfigError

TableBuilder = Callable[[int, int, "EmbeddingSpec"], nn.Module]
_BUILDERS: dict[str, TableBuilder] = {}


def register_table(kind: str) -> Callable[[TableBuilder], TableBuilder]:
    """Register a builder for an embedding kind (used by compact/quantized tables)."""

    def deco(fn: TableBuilder) -> TableBuilder:
        _BUILDERS[kind] = fn
        return fn

    return deco


@dataclass(frozen=True)
class EmbeddingSpec:
    """How one table is stored: ``kind`` ('dense', 'fp16', 'int8', 'int4', 'qr', 'hash', ...)
    plus kind-specific integer/float parameters (e.g. ``buckets`` for 'hash')."""

    kind: str = "dense"
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> EmbeddingSpec:
        return cls(kind=str(obj.get("kind", "dense")), params=dict(obj.get("params", {})))


@dataclass(frozen=True)
class EmbeddingPlan:
    """Per-table specs with a default; serialised into the model config."""

    default: EmbeddingSpec = field(default_factory=EmbeddingSpec)
    tables: Mapping[str, EmbeddingSpec] = field(default_factory=dict)

    def spec(self, name: str) -> EmbeddingSpec:
        return self.tables.get(name, self.default)

    def build(self, name: str, num_embeddings: int, dim: int) -> nn.Module:
        spec = self.spec(name)
        _ensure_builtin_kinds()
        builder = _BUILDERS.get(spec.kind)
        if builder is None:
            raise ConfigError(
                f"unknown embedding kind '{spec.kind}' for table '{name}' (known: {', '.join(sorted(_BUILDERS))})"
            )
        module = builder(num_embeddings, dim, spec)
        module.turborec_table_name = name  # type: ignore[assignment]  # lets turborec.compress map a module back to its plan entry
        return module

    def with_table(self, name: str, spec: EmbeddingSpec) -> EmbeddingPlan:
        return EmbeddingPlan(self.default, {**self.tables, name: spec})

    def to_dict(self) -> dict[str, Any]:
        return {"default": self.default.to_dict(), "tables": {k: v.to_dict() for k, v in self.tables.items()}}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any] | None) -> EmbeddingPlan:
        if not obj:
            return cls()
        return cls(
            default=EmbeddingSpec.from_dict(obj.get("default", {})),
            tables={k: EmbeddingSpec.from_dict(v) for k, v in obj.get("tables", {}).items()},
        )


@register_table("dense")
def _dense(num: int, dim: int, spec: EmbeddingSpec) -> nn.Module:
    emb = nn.Embedding(num, dim)
    nn.init.normal_(emb.weight, std=float(spec.params.get("init_std", 0.05)))
    return emb


def _ensure_builtin_kinds() -> None:
    """Import modules that register further kinds (kept lazy to keep import light)."""
    with contextlib.suppress(ImportError):
        import turborec.models.compact  # noqa: F401  (registers quantized / compositional tables)


def pooled_lookup(table: nn.Module, indices: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Pool rows of ``table`` over the last axis of ``indices`` ([..., L], -1 = padding).

    ``mode``: "sum", "mean", or "sqrt" (the sum over the square root of the count).

    Written as gather + masked sum (not ``nn.EmbeddingBag``) so it exports to ONNX
    as plain gathers and works with any table module. While training (gradients on) a
    plain ``nn.Embedding`` runs the same sum as one ``embedding_bag`` (weights 0 at padding,
    1/count for the mean): ~3x cheaper forward + backward on CPU than the gather, the mask
    product and the sum, which were ~12% of a two-tower training step (issue 16). Inference
    keeps the gathers, so an eager call and its TorchScript trace agree bit for bit.
    """
    if (torch.is_grad_enabled() and type(table) is nn.Embedding and table.max_norm is None and indices.dim() >= 2
            and indices.numel() and not _exporting()):
        return _bag_lookup(table, indices, mode)
    mask = indices >= 0
    rows = table(indices.clamp_min(0))
    rows = rows * mask.unsqueeze(-1).to(rows.dtype)
    total = rows.sum(dim=-2)
    if mode == "sum":
        return total
    count = mask.sum(dim=-1, keepdim=True).clamp_min(1).to(total.dtype)
    return total / (count.sqrt() if mode == "sqrt" else count)


def all_rows(table: nn.Module) -> torch.Tensor:
    """Every row of ``table`` in order: a dense table's weight itself (its gradient flows straight in,
    where a lookup of all indices copies the table and scatters the gradient back), else a lookup."""
    if type(table) is nn.Embedding:
        return table.weight
    n = int(table.num_embeddings)  # type: ignore[arg-type]
    device = next(iter(table.parameters()), next(iter(table.buffers()), torch.empty(0))).device
    return table(torch.arange(n, device=device))


def _exporting() -> bool:
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.jit.is_scripting()
                or torch.compiler.is_compiling())


def _bag_lookup(table: nn.Embedding, indices: torch.Tensor, mode: str) -> torch.Tensor:
    """:func:`pooled_lookup` of a dense table as one weighted ``embedding_bag`` over the last axis."""
    flat = indices.reshape(-1, indices.shape[-1])
    weights = (flat >= 0).to(table.weight.dtype)
    if mode != "sum":
        count = weights.sum(dim=-1, keepdim=True).clamp_min(1)
        weights = weights / (count.sqrt() if mode == "sqrt" else count)
    pooled = F.embedding_bag(flat.clamp_min(0), table.weight, per_sample_weights=weights, mode="sum")
    return pooled.reshape(*indices.shape[:-1], table.embedding_dim)


def table_nbytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers (the resident size of its tables)."""
    n = 0
    for t in list(module.parameters()) + list(module.buffers()):
        n += t.numel() * t.element_size()
    return n


def spec_summary(plan: EmbeddingPlan) -> str:
    parts = [f"default={plan.default.kind}"] + [f"{k}={v.kind}" for k, v in plan.tables.items()]
    return ",".join(parts)


__all__ = [
    "EmbeddingPlan",
    "EmbeddingSpec",
    "all_rows",
    "pooled_lookup",
    "register_table",
    "spec_summary",
    "table_nbytes",
]
