"""Compact embedding tables, registered as :class:`EmbeddingSpec` kinds.

Kinds and their ``spec.params``:

=============  ==================================================================
fp16, bf16     half-precision storage, float32 rows out (inference)
int8, int4     row-wise quantized storage (format in :mod:`compact_quant`) (inference)
qr             ``collisions`` (m, required), ``operation`` ('mult' | 'add'), ``init_std``
hash           ``buckets`` (required), ``num_hashes`` (1), ``seed`` (0), ``init_std``
pruned_rows    ``kept`` (required), ``inner`` (spec of the kept rows' table, default dense)
mixed_dim      ``tier_sizes`` and ``tier_dims`` (required, one entry per tier)
=============  ==================================================================

Every builder makes a module whose state-dict shapes depend only on (num, dim, params),
which is what lets an artifact rebuild a network from its plan and load its weights strictly.
Modules built here are placeholders until their state is loaded; the ``from_float`` /
``from_counts`` constructors make them from a trained dense table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from turborec.errors import ConfigError
from turborec.models.compact_frequency import (
    INNER_KINDS,
    MixedDimEmbedding,
    PrunedRowEmbedding,
    frequency_order,
    inner_spec,
)
from turborec.models.compact_quant import (
    QUANTIZED_KINDS,
    SCALE_FLOOR,
    HalfEmbedding,
    Int4RowwiseEmbedding,
    Int8RowwiseEmbedding,
    dequantize_codes,
    quantize_rows,
    quantize_table,
    unpack_int4,
)
from turborec.models.compact_shared import HashedEmbedding, QREmbedding
from turborec.models.embeddings import EmbeddingSpec, register_table

COMPACT_TABLE_TYPES: tuple[type[nn.Module], ...] = (
    HalfEmbedding,
    Int8RowwiseEmbedding,
    Int4RowwiseEmbedding,
    QREmbedding,
    HashedEmbedding,
    PrunedRowEmbedding,
    MixedDimEmbedding,
)

_KNOWN_PARAMS: dict[str, frozenset[str]] = {
    "fp16": frozenset(),
    "bf16": frozenset(),
    "int8": frozenset(),
    "int4": frozenset(),
    "qr": frozenset({"collisions", "operation", "init_std"}),
    "hash": frozenset({"buckets", "num_hashes", "seed", "init_std"}),
    "pruned_rows": frozenset({"kept", "inner"}),
    "mixed_dim": frozenset({"tier_sizes", "tier_dims", "init_std"}),
}


def _params(kind: str, spec: EmbeddingSpec, required: tuple[str, ...] = ()) -> Mapping[str, Any]:
    params = spec.params
    unknown = set(params) - _KNOWN_PARAMS[kind]
    if unknown:
        raise ConfigError(
            f"embedding kind '{kind}': unknown params {sorted(unknown)} (known: {sorted(_KNOWN_PARAMS[kind]) or 'none'})"
        )
    missing = [p for p in required if p not in params]
    if missing:
        raise ConfigError(f"embedding kind '{kind}' needs params {missing}")
    return params


@register_table("fp16")
def _fp16(num: int, dim: int, spec: EmbeddingSpec) -> nn.Module:
    _params("fp16", spec)
    return HalfEmbedding(num, dim, "fp16")


@register_table("bf16")
def _bf16(num: int, dim: int, spec: EmbeddingSpec) -> nn.Module:
    _params("bf16", spec)
    return HalfEmbedding(num, dim, "bf16")


@register_table("int8")
def _int8(num: int, dim: int, spec: EmbeddingSpec) -> nn.Module:
    _params("int8", spec)
    return Int8RowwiseEmbedding(num, dim)


@register_table("int4")
def _int4(num: int, dim: int, spec: EmbeddingSpec) -> nn.Module:
    _params("int4", spec)
    return Int4RowwiseEmbedding(num, dim)


@register_table("qr")
def _qr(num: int, dim: int, spec: EmbeddingSpec) -> nn.Module:
    p = _params("qr", spec, ("collisions",))
    return QREmbedding(
        num, dim, p["collisions"], str(p.get("operation", "mult")), init_std=float(p.get("init_std", 0.05))
    )


@register_table("hash")
def _hash(num: int, dim: int, spec: EmbeddingSpec) -> nn.Module:
    p = _params("hash", spec, ("buckets",))
    return HashedEmbedding(
        num, dim, p["buckets"], num_hashes=p.get("num_hashes", 1), seed=int(p.get("seed", 0)),
        init_std=float(p.get("init_std", 0.05)),
    )


@register_table("pruned_rows")
def _pruned_rows(num: int, dim: int, spec: EmbeddingSpec) -> nn.Module:
    p = _params("pruned_rows", spec, ("kept",))
    return PrunedRowEmbedding(num, dim, p["kept"], inner_spec(p))


@register_table("mixed_dim")
def _mixed_dim(num: int, dim: int, spec: EmbeddingSpec) -> nn.Module:
    p = _params("mixed_dim", spec, ("tier_sizes", "tier_dims"))
    sizes, dims = p["tier_sizes"], p["tier_dims"]
    if not isinstance(sizes, (list, tuple)) or not isinstance(dims, (list, tuple)):
        raise ConfigError(f"mixed_dim 'tier_sizes' and 'tier_dims' must be lists, got {sizes!r} and {dims!r}")
    return MixedDimEmbedding(num, dim, sizes, dims, init_std=float(p.get("init_std", 0.05)))


def is_table(module: nn.Module) -> bool:
    """True for modules that follow the table contract and can be recorded in a plan."""
    return isinstance(module, (nn.Embedding, *COMPACT_TABLE_TYPES))


def table_spec(module: nn.Module) -> EmbeddingSpec:
    """The spec that rebuilds ``module``'s structure (its state comes from ``state_dict``)."""
    if isinstance(module, nn.Embedding):
        return EmbeddingSpec("dense")
    to_spec = getattr(module, "to_spec", None)
    if to_spec is None:
        raise ConfigError(f"{type(module).__name__} is not an embedding table turborec can record")
    spec = to_spec()
    assert isinstance(spec, EmbeddingSpec)
    return spec


__all__ = [
    "COMPACT_TABLE_TYPES",
    "INNER_KINDS",
    "QUANTIZED_KINDS",
    "SCALE_FLOOR",
    "HalfEmbedding",
    "HashedEmbedding",
    "Int4RowwiseEmbedding",
    "Int8RowwiseEmbedding",
    "MixedDimEmbedding",
    "PrunedRowEmbedding",
    "QREmbedding",
    "dequantize_codes",
    "frequency_order",
    "is_table",
    "quantize_rows",
    "quantize_table",
    "table_spec",
    "unpack_int4",
]
