"""Frequency-driven table transforms: prune rare rows, or give rare rows fewer dimensions.

``counts`` maps a table's plan name to one non-negative count per id (numpy, e.g. the number
of training interactions of each item). Sizes chosen from the data are written into the
table's spec, so the network saves and reloads from its plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import nn

from turborec.compress._netwalk import append_record, check_fraction, copy_with, record_specs, select_tables, tag_table
from turborec.errors import ConfigError
from turborec.models.compact import (
    INNER_KINDS,
    MixedDimEmbedding,
    PrunedRowEmbedding,
    frequency_order,
    table_spec,
)
from turborec.models.embeddings import EmbeddingSpec


def _dense_tables(net: nn.Module, counts: Mapping[str, Any], what: str) -> list[tuple[str, nn.Embedding, np.ndarray]]:
    if not isinstance(counts, Mapping) or not counts:
        raise ConfigError(f"{what}: counts must map table names to per-id counts, got {type(counts).__name__}")
    refs = select_tables(net, list(counts), what)
    out = []
    for ref in refs:
        name = str(ref.name)
        if not isinstance(ref.module, nn.Embedding):
            raise ConfigError(f"{what}: table '{name}' is a '{table_spec(ref.module).kind}' table; it needs the dense one")
        arr = np.asarray(counts[name])
        frequency_order(arr, ref.module.num_embeddings, what=f"{what} counts['{name}']")  # validates shape and values
        out.append((name, ref.module, arr))
    return out


def _kept_rows(keep: Any, num: int, table: str) -> int:
    if isinstance(keep, float):
        return max(1, math.ceil(check_fraction(keep, "prune_rows_by_frequency keep") * num))
    if isinstance(keep, (int, np.integer)) and not isinstance(keep, bool) and 1 <= keep < num:
        return int(keep)
    raise ConfigError(
        f"prune_rows_by_frequency: keep must be a fraction in (0, 1) or a row count in [1, {num - 1}] "
        f"for table '{table}', got {keep!r}"
    )


def prune_rows_by_frequency(
    net: nn.Module, counts: Mapping[str, Any], keep: float | int, *, inner: str = "dense", inplace: bool = False
) -> nn.Module:
    """Keep the rows of the most frequent ids of each table in ``counts``; all others share one row.

    ``keep``: fraction of rows (float in (0, 1)) or number of rows (int). ``inner``: storage of
    the kept rows ('dense' stays trainable; 'fp16', 'bf16', 'int8', 'int4' for inference).
    The shared row starts as the count-weighted mean of the rows it replaces.
    """
    if inner not in INNER_KINDS:
        raise ConfigError(f"prune_rows_by_frequency: inner must be one of {list(INNER_KINDS)}, got {inner!r}")
    tables = _dense_tables(net, counts, "prune_rows_by_frequency")
    kept = {name: _kept_rows(keep, table.num_embeddings, name) for name, table, _ in tables}
    replacements = {
        id(table): tag_table(PrunedRowEmbedding.from_counts(table, arr, kept[name], EmbeddingSpec(inner)), name)
        for name, table, arr in tables
    }
    out = copy_with(net, replacements, inplace)
    specs = {name: table_spec(replacements[id(table)]) for name, table, _ in tables}
    record_specs(out, specs, "prune_rows_by_frequency")
    append_record(out, {"transform": "prune_rows_by_frequency", "kept": kept, "inner": inner})
    return out


def mixed_dims_by_frequency(
    net: nn.Module, counts: Mapping[str, Any], *, popular: float = 0.1, small_dim: int | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Two tiers per table: the ``popular`` fraction of most frequent ids keeps the full dim, the
    rest get ``small_dim`` (default dim // 4) dimensions, initialised by truncated SVD of their
    rows and projected back up to the full dim. The result is trainable (fine-tune it)."""
    popular = check_fraction(popular, "mixed_dims_by_frequency popular")
    tables = _dense_tables(net, counts, "mixed_dims_by_frequency")
    tiers: dict[str, tuple[list[int], list[int]]] = {}
    for name, table, _ in tables:
        num, dim = table.num_embeddings, table.embedding_dim
        small = max(1, dim // 4) if small_dim is None else small_dim
        if isinstance(small, bool) or not isinstance(small, (int, np.integer)) or not 1 <= small < dim:
            raise ConfigError(f"mixed_dims_by_frequency: small_dim must be an integer in [1, {dim - 1}], got {small!r}")
        if num < 2:
            raise ConfigError(f"mixed_dims_by_frequency: table '{name}' has {num} row(s); nothing to split")
        n_full = min(num - 1, max(1, math.ceil(popular * num)))
        tiers[name] = ([n_full, num - n_full], [dim, int(small)])
    replacements = {
        id(table): tag_table(MixedDimEmbedding.from_counts(table, arr, *tiers[name]), name)
        for name, table, arr in tables
    }
    out = copy_with(net, replacements, inplace)
    specs = {name: table_spec(replacements[id(table)]) for name, table, _ in tables}
    record_specs(out, specs, "mixed_dims_by_frequency")
    append_record(out, {"transform": "mixed_dims_by_frequency", "tiers": {k: v[0] for k, v in tiers.items()},
                        "popular": popular})
    return out


__all__ = ["mixed_dims_by_frequency", "prune_rows_by_frequency"]
