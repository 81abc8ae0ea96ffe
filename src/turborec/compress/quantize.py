"""Quantization transforms: embedding tables to fp16/bf16/int8/int4, MLPs to dynamic int8.

Table quantization is a weight transform: the quantized tables are ordinary buffers and the
plan records their kind, so the model saves and loads like any other. A table is only
quantized where that makes it smaller (a 1-wide table of per-category weights grows as int8:
each row also stores an fp32 scale and bias). Dynamic int8 quantization of ``nn.Linear``
layers swaps them for :class:`Int8DynamicLinear`, whose state is int8 tensors; the swap is
recorded so a loader can rebuild the layers before their weights load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from torch import nn

from turborec.compress._netwalk import (
    TableRef,
    append_record,
    copy_with,
    record_specs,
    select_linears,
    select_tables,
    tag_table,
)
from turborec.errors import ConfigError
from turborec.models.compact import PrunedRowEmbedding, quantize_table, table_spec
from turborec.models.compact_linear import Int8DynamicLinear
from turborec.models.embeddings import EmbeddingSpec

TABLE_QUANT_KINDS = ("fp16", "bf16", "int8", "int4")


def _quantized_table(module: nn.Module, kind: str, name: str | None) -> nn.Module:
    if isinstance(module, nn.Embedding):
        return quantize_table(module, kind)
    if isinstance(module, PrunedRowEmbedding) and isinstance(module.table, nn.Embedding):
        return module.with_inner(quantize_table(module.table, kind), EmbeddingSpec(kind))
    current = table_spec(module)
    detail = f" (its kept rows are already '{current.params['inner']['kind']}')" if current.kind == "pruned_rows" else ""
    raise ConfigError(
        f"quantize_embeddings: cannot make table '{name}' {kind}: it is a '{current.kind}' table{detail}; "
        f"quantize from the dense table, or leave it out with tables=[...]"
    )


def row_bytes(kind: str, dim: int) -> int:
    """Bytes one row of a ``dim``-wide table takes stored as ``kind`` ('dense' = fp32)."""
    if kind in ("fp16", "bf16"):
        return 2 * dim
    if kind == "int8":
        return dim + 8  # codes + fp32 scale + fp32 bias
    if kind == "int4":
        return (dim + 1) // 2 + 8
    return 4 * dim


def _convertible(module: nn.Module) -> bool:
    return isinstance(module, nn.Embedding) or (
        isinstance(module, PrunedRowEmbedding) and isinstance(module.table, nn.Embedding)
    )


def tables_to_quantize(net: nn.Module, kind: str, tables: Iterable[str] | None = None) -> list[TableRef]:
    """Check a :func:`quantize_embeddings` request without doing it; returns the tables it would convert.

    With ``tables=None`` every plan-built table that gets smaller as ``kind`` is chosen; a table
    named explicitly that would not get smaller, or that is already compressed, is a ConfigError.
    """
    if kind not in TABLE_QUANT_KINDS:
        raise ConfigError(f"quantize_embeddings: unknown kind '{kind}' (choose from {', '.join(TABLE_QUANT_KINDS)})")
    refs = select_tables(net, tables, "quantize_embeddings")
    for ref in refs:
        if not _convertible(ref.module):
            _quantized_table(ref.module, kind, ref.name)  # raises, naming the table and its kind
    shrinking = [r for r in refs if row_bytes(kind, _dim(r.module)) < row_bytes("dense", _dim(r.module))]
    if tables is not None and len(shrinking) < len(refs):
        bad = next(r for r in refs if r not in shrinking)
        dim = _dim(bad.module)
        raise ConfigError(
            f"quantize_embeddings: table '{bad.name}' is {dim} wide, which {kind} cannot shrink "
            f"({row_bytes(kind, dim)} bytes a row against {row_bytes('dense', dim)}: each row also keeps an "
            f"fp32 scale and bias); leave it out of tables=[...]"
        )
    if not shrinking:
        raise ConfigError(
            f"quantize_embeddings: no table of {type(net).__name__} gets smaller as {kind} "
            f"(widths {sorted({_dim(r.module) for r in refs})})"
        )
    return shrinking


def _dim(module: nn.Module) -> int:
    return int(getattr(module, "embedding_dim", 0))


def quantize_embeddings(
    net: nn.Module, kind: str = "int8", tables: Iterable[str] | None = None, *, inplace: bool = False
) -> nn.Module:
    """Store the named tables (by default every plan-built table that gets smaller) as ``kind``.

    Returns a network of the same class whose plan records the new kinds, so it saves and
    loads like the original. Dense tables and pruned_rows tables with dense kept rows can be
    quantized; anything already compressed raises ConfigError before any work is done
    (:func:`tables_to_quantize` runs the same checks alone).
    """
    wanted = None if tables is None else ([tables] if isinstance(tables, str) else list(tables))
    refs = tables_to_quantize(net, kind, wanted)
    replacements = {id(r.module): tag_table(_quantized_table(r.module, kind, r.name), r.name) for r in refs}
    out = copy_with(net, replacements, inplace)
    specs = {str(r.name): table_spec(replacements[id(r.module)]) for r in refs}
    record_specs(out, specs, "quantize_embeddings")
    append_record(out, {"transform": "quantize_embeddings", "kind": kind, "tables": sorted(specs)})
    return out


def quantize_mlp_dynamic(net: nn.Module, *, layers: Iterable[str] | None = None, inplace: bool = False) -> nn.Module:
    """int8 dynamic quantization of ``nn.Linear`` layers: int8 per-channel weights, activations
    quantized per batch (:class:`~turborec.models.compact_linear.Int8DynamicLinear`, CPU kernels).

    ``layers``: paths of the layers (default: every Linear outside embedding tables). The new
    layers' state is int8 tensors, so the network saves as it is; the record lets a loader swap
    the rebuilt network's Linear layers for int8 ones before the weights load.
    """
    paths = [p for p, _ in select_linears(net, layers, "quantize_mlp_dynamic")]
    out = copy_with(net, {}, inplace)
    swap_linears(out, paths, Int8DynamicLinear.from_float)
    append_record(out, {"transform": "quantize_mlp_dynamic", "layers": paths})
    return out


def swap_linears(net: nn.Module, paths: Sequence[str], make: Callable[[nn.Linear], nn.Module]) -> None:
    """Replace the nn.Linear at each path of ``net`` (in place) by ``make(linear)``."""
    for path in paths:
        parent_path, _, name = path.rpartition(".")
        parent = net.get_submodule(parent_path) if parent_path else net
        old = getattr(parent, name, None)
        if not isinstance(old, nn.Linear):
            raise ConfigError(f"no nn.Linear at '{path}' in {type(net).__name__} (found {type(old).__name__})")
        new = make(old)
        for module in net.modules():  # every alias of the layer follows
            for child_name, child in list(module.named_children()):
                if child is old:
                    setattr(module, child_name, new)


def replay_mlp_dynamic(net: nn.Module, record: Mapping[str, Any]) -> None:
    """Give a freshly built network the int8 layers a recorded :func:`quantize_mlp_dynamic` made
    (placeholders: their int8 weights come with the state dict)."""
    layers = record["layers"]
    if not isinstance(layers, list) or not all(isinstance(p, str) for p in layers):
        raise ConfigError(f"recorded quantize_mlp_dynamic layers must be a list of paths, got {layers!r}")
    swap_linears(
        net, layers, lambda lin: Int8DynamicLinear(lin.in_features, lin.out_features, bias=lin.bias is not None)
    )


__all__ = [
    "TABLE_QUANT_KINDS",
    "quantize_embeddings",
    "quantize_mlp_dynamic",
    "replay_mlp_dynamic",
    "row_bytes",
    "swap_linears",
    "tables_to_quantize",
]
