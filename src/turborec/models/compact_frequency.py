"""Tables shaped by id frequency: pruned rows (rare ids share one row) and mixed dimensions.

Both hold an int32 map from id to a row of smaller storage. The map's size and every
table's shape come from (num, dim, spec.params) alone, so a module rebuilt from its spec
takes its saved state with ``load_state_dict(strict=True)``; the data-dependent choice
(which ids are popular) lives in the saved map, the sizes in the spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from turborec.errors import ConfigError, DataError
from turborec.models.embeddings import EmbeddingPlan, EmbeddingSpec

INNER_KINDS = ("dense", "fp16", "bf16", "int8", "int4")


def _positive_int(value: Any, what: str, upper: int | None = None) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    if upper is not None and value > upper:
        raise ConfigError(f"{what} must be at most {upper}, got {value!r}")
    return int(value)


def frequency_order(counts: np.ndarray | torch.Tensor, num: int, what: str = "counts") -> torch.Tensor:
    """Ids sorted by descending count, ties by ascending id (LongTensor [num])."""
    arr = counts.detach().cpu().numpy() if isinstance(counts, torch.Tensor) else np.asarray(counts)
    if arr.ndim != 1 or arr.shape[0] != num:
        raise DataError(f"expected one count per id ({num}), got shape {arr.shape}", source=what)
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)) or (arr < 0).any():
        raise DataError("counts must be finite and non-negative numbers", source=what)
    order = np.lexsort((np.arange(num), -arr.astype(np.float64)))
    return torch.from_numpy(order.astype(np.int64))


def _dense_rows(module: nn.Module, what: str) -> torch.Tensor:
    if not isinstance(module, nn.Embedding):
        raise ConfigError(f"{what} is made from a dense nn.Embedding, got {type(module).__name__}")
    return module.weight.detach().to(torch.float32)


class PrunedRowEmbedding(nn.Module):
    """Keeps ``kept`` rows; every other id maps to one shared row (index ``kept`` of the inner table).

    ``remap`` int32 [num] sends ids to rows of ``table``, a dense or quantized table of
    ``kept + 1`` rows built from the ``inner`` spec.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, kept: int, inner: EmbeddingSpec | None = None) -> None:
        super().__init__()
        inner = inner or EmbeddingSpec("dense")
        self.kept = _positive_int(kept, "pruned_rows 'kept'", upper=num_embeddings)
        if inner.kind not in INNER_KINDS:
            raise ConfigError(f"pruned_rows 'inner' kind must be one of {list(INNER_KINDS)}, got '{inner.kind}'")
        self.inner = inner
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.remap: torch.Tensor
        self.register_buffer("remap", torch.full((num_embeddings,), self.kept, dtype=torch.int32))
        self.table = EmbeddingPlan(default=inner).build("pruned_rows.inner", self.kept + 1, embedding_dim)

    @classmethod
    def from_counts(
        cls, module: nn.Module, counts: np.ndarray | torch.Tensor, kept: int, inner: EmbeddingSpec | None = None
    ) -> PrunedRowEmbedding:
        """Keep the ``kept`` most frequent ids' rows; the shared row is the count-weighted mean of the rest."""
        w = _dense_rows(module, "a pruned_rows table")
        num, dim = w.shape
        kept = _positive_int(kept, "pruned_rows 'kept'", upper=num)
        order = frequency_order(counts, num)
        keep_ids = order[:kept].sort().values  # ascending ids: the kept rows stay in id order
        drop_ids = order[kept:]
        weights = torch.as_tensor(np.asarray(counts, dtype=np.float64)[drop_ids.numpy()], dtype=torch.float64)
        if len(drop_ids) == 0:
            shared = torch.zeros(dim)
        elif weights.sum() > 0:
            shared = ((w[drop_ids].double() * weights.unsqueeze(1)).sum(0) / weights.sum()).float()
        else:
            shared = w[drop_ids].mean(0)
        dense = nn.Embedding(kept + 1, dim)
        with torch.no_grad():
            dense.weight.copy_(torch.cat([w[keep_ids], shared.unsqueeze(0)]))
        out = cls(num, dim, kept, inner)
        out.remap[keep_ids] = torch.arange(kept, dtype=torch.int32)
        out.table = _convert_inner(dense, out.inner)
        return out

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.table(self.remap[indices].to(torch.int64))

    def with_inner(self, table: nn.Module, inner: EmbeddingSpec) -> PrunedRowEmbedding:
        """The same remap over another storage of the kept rows (e.g. the dense rows quantized)."""
        out = PrunedRowEmbedding(self.num_embeddings, self.embedding_dim, self.kept, inner)
        out.remap.copy_(self.remap)
        out.table = table
        return out

    def to_spec(self) -> EmbeddingSpec:
        return EmbeddingSpec("pruned_rows", {"kept": self.kept, "inner": self.inner.to_dict()})

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, kept={self.kept}, inner={self.inner.kind}"


def _convert_inner(dense: nn.Embedding, inner: EmbeddingSpec) -> nn.Module:
    if inner.kind == "dense":
        return dense
    from turborec.models.compact_quant import quantize_table

    return quantize_table(dense, inner.kind)


class MixedDimEmbedding(nn.Module):
    """Frequency tiers with their own widths (Ginart et al., 2021), projected up to ``dim``.

    Ids are ranked by popularity (``slot`` int32 [num] = rank); tier k holds ranks
    [start_k, start_k + tier_sizes[k]) in an [tier_sizes[k], tier_dims[k]] table and a bias-free
    projection to ``dim`` (none when tier_dims[k] == dim). Typical: a few popular ids at full
    width, the long tail at a small one.
    """

    def __init__(
        self, num_embeddings: int, embedding_dim: int, tier_sizes: Sequence[int], tier_dims: Sequence[int],
        init_std: float = 0.05,
    ) -> None:
        super().__init__()
        sizes = [_positive_int(s, "mixed_dim 'tier_sizes' entry") for s in tier_sizes]
        dims = [_positive_int(d, "mixed_dim 'tier_dims' entry", upper=embedding_dim) for d in tier_dims]
        if not sizes or len(sizes) != len(dims):
            raise ConfigError(f"mixed_dim needs as many 'tier_sizes' as 'tier_dims', got {sizes} and {dims}")
        if sum(sizes) != num_embeddings:
            raise ConfigError(f"mixed_dim 'tier_sizes' {sizes} must add up to the table's {num_embeddings} rows")
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.tier_sizes = sizes
        self.tier_dims = dims
        self.starts = [int(v) for v in np.cumsum([0, *sizes[:-1]])]
        self.slot: torch.Tensor
        self.register_buffer("slot", torch.arange(num_embeddings, dtype=torch.int32))
        self.tables = nn.ModuleList(nn.Embedding(n, d) for n, d in zip(sizes, dims))
        self.projections = nn.ModuleList(
            nn.Identity() if d == embedding_dim else nn.Linear(d, embedding_dim, bias=False) for d in dims
        )
        for table in self.tables:
            assert isinstance(table, nn.Embedding)
            nn.init.normal_(table.weight, std=init_std)

    @classmethod
    def from_counts(
        cls, module: nn.Module, counts: np.ndarray | torch.Tensor, tier_sizes: Sequence[int], tier_dims: Sequence[int]
    ) -> MixedDimEmbedding:
        """Tiers from the dense rows: full-width tiers copy them, narrow tiers take their best
        rank-d approximation (truncated SVD: rows = U_d S_d, projection = V_d^T)."""
        w = _dense_rows(module, "a mixed_dim table")
        num, dim = w.shape
        out = cls(num, dim, tier_sizes, tier_dims)
        order = frequency_order(counts, num)
        out.slot[order] = torch.arange(num, dtype=torch.int32)
        with torch.no_grad():
            for k, (start, size, d) in enumerate(zip(out.starts, out.tier_sizes, out.tier_dims)):
                rows = w[order[start : start + size]]
                table = out.tables[k]
                assert isinstance(table, nn.Embedding)
                if d == dim:
                    table.weight.copy_(rows)
                    continue
                u, s, vh = torch.linalg.svd(rows.double(), full_matrices=False)
                r = min(d, len(s))
                table.weight.zero_()
                table.weight[:, :r] = (u[:, :r] * s[:r]).float()
                proj = out.projections[k]
                assert isinstance(proj, nn.Linear)
                proj.weight.zero_()
                proj.weight[:, :r] = vh[:r].T.float()
        return out

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        slot = self.slot[indices].to(torch.int64)
        out: torch.Tensor | None = None
        for start, size, table, proj in zip(self.starts, self.tier_sizes, self.tables, self.projections):
            rows = proj(table((slot - start).clamp(0, size - 1)))
            out = rows if out is None else torch.where((slot >= start).unsqueeze(-1), rows, out)
        assert out is not None
        return out

    def to_spec(self) -> EmbeddingSpec:
        return EmbeddingSpec("mixed_dim", {"tier_sizes": list(self.tier_sizes), "tier_dims": list(self.tier_dims)})

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, tier_sizes={self.tier_sizes}, tier_dims={self.tier_dims}"


def inner_spec(params: Mapping[str, Any]) -> EmbeddingSpec:
    raw = params.get("inner", {"kind": "dense"})
    if isinstance(raw, str):
        return EmbeddingSpec(raw)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"pruned_rows 'inner' must be a kind or a spec mapping, got {raw!r}")
    return EmbeddingSpec.from_dict(raw)


__all__ = ["INNER_KINDS", "MixedDimEmbedding", "PrunedRowEmbedding", "frequency_order", "inner_spec"]
