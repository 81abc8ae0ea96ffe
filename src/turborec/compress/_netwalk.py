"""Finding a network's tables and MLP layers, swapping modules, and recording what was done.

Transforms work on any network that builds its tables through an ``EmbeddingPlan`` kept in
``net.config`` (every ``EmbeddingPlan`` field of the config is updated). A table module is
matched to its plan entry by the ``turborec_table_name`` attribute that plan-built tables
carry; tables without it (built outside the plan) are left alone.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from turborec.errors import ConfigError
from turborec.models.compact import is_table
from turborec.models.embeddings import EmbeddingPlan, EmbeddingSpec

TABLE_NAME_ATTR = "turborec_table_name"
TRANSFORMS_ATTR = "turborec_transforms"
PLAN_ATTR = "embedding_plan"  # where CTR rankers keep their plan (outside their config)


@dataclass(frozen=True)
class TableRef:
    """One table module of a network: its plan entry ``name`` and every attribute path reaching it."""

    name: str | None
    paths: tuple[str, ...]
    module: nn.Module


def _walk(module: nn.Module, prefix: str, stop: Any) -> Iterable[tuple[str, nn.Module]]:
    """Every (path, submodule) below ``module``, not descending into modules where ``stop`` is true."""
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        yield path, child
        if not stop(child):
            yield from _walk(child, path, stop)


def find_tables(net: nn.Module) -> list[TableRef]:
    """Every distinct table module in ``net`` (a table shared by two towers appears once, with both paths)."""
    found: dict[int, tuple[list[str], nn.Module]] = {}
    for path, module in _walk(net, "", is_table):
        if is_table(module):
            found.setdefault(id(module), ([], module))[0].append(path)
    return [
        TableRef(getattr(module, TABLE_NAME_ATTR, None), tuple(paths), module) for paths, module in found.values()
    ]


def select_tables(net: nn.Module, names: Iterable[str] | None, what: str) -> list[TableRef]:
    """The plan-built tables called ``names`` (all plan-built tables when None); ConfigError otherwise."""
    refs = find_tables(net)
    if refs:
        require_plan(net, what)
    named = [r for r in refs if r.name is not None]
    if not named:
        untagged = [r.paths[0] for r in refs]
        raise ConfigError(
            f"{what}: {type(net).__name__} has no table built through its EmbeddingPlan"
            + (f" (tables at {untagged} carry no '{TABLE_NAME_ATTR}')" if untagged else "")
        )
    if names is None:
        return named
    wanted = [names] if isinstance(names, str) else list(names)
    by_name: dict[str, list[TableRef]] = {}
    for r in named:
        by_name.setdefault(r.name or "", []).append(r)
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ConfigError(f"{what}: no table named {unknown} in {type(net).__name__} (tables: {sorted(by_name)})")
    return [r for n in dict.fromkeys(wanted) for r in by_name[n]]


def plan_fields(net: nn.Module, what: str) -> dict[str, EmbeddingPlan]:
    """The EmbeddingPlan fields of ``net.config`` (retrieval nets keep their plan in the config)."""
    config = getattr(net, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return {}
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if isinstance(getattr(config, f.name), EmbeddingPlan)
    }


def require_plan(net: nn.Module, what: str) -> None:
    """ConfigError unless ``net`` keeps an EmbeddingPlan that a table transform can be recorded in."""
    if not plan_fields(net, what) and not isinstance(getattr(net, PLAN_ATTR, None), EmbeddingPlan):
        raise ConfigError(
            f"{what}: {type(net).__name__} has no embedding tables to transform (two-tower, BPR and the CTR "
            f"rankers have them); its dense layers can still be stored as int8 (--mlp int8)"
        )


def record_specs(net: nn.Module, specs: Mapping[str, EmbeddingSpec], what: str) -> None:
    """Write ``specs`` into every EmbeddingPlan of ``net.config`` (a frozen dataclass, so replaced) and
    into ``net.embedding_plan`` where the net keeps its plan there (CTR rankers)."""
    require_plan(net, what)
    plans = plan_fields(net, what)
    own_plan = getattr(net, PLAN_ATTR, None)
    if plans:
        updated = {}
        for field_name, plan in plans.items():
            for table, spec in specs.items():
                plan = plan.with_table(table, spec)
            updated[field_name] = plan
        config: Any = net.config
        net.config = dataclasses.replace(config, **updated)
    if isinstance(own_plan, EmbeddingPlan):
        for table, spec in specs.items():
            own_plan = own_plan.with_table(table, spec)
        setattr(net, PLAN_ATTR, own_plan)


def copy_with(net: nn.Module, replacements: Mapping[int, nn.Module], inplace: bool) -> nn.Module:
    """``net`` with modules swapped (keys are ``id(old_module)``); every alias of a swapped module follows.

    A copy is made through ``deepcopy``'s memo, so the replaced (large, dense) modules are never copied.
    """
    if not inplace:
        memo: dict[int, Any] = dict(replacements)
        return copy.deepcopy(net, memo)
    for parent in [net, *net.modules()]:
        for name, child in list(parent.named_children()):
            if id(child) in replacements:
                setattr(parent, name, replacements[id(child)])
    return net


def tag_table(module: nn.Module, name: str | None) -> nn.Module:
    if name is not None:
        setattr(module, TABLE_NAME_ATTR, name)
    return module


def find_linears(net: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Every nn.Linear outside embedding tables (a table's own projections are part of the table)."""
    seen: set[int] = set()
    out = []
    for path, module in _walk(net, "", is_table):
        if isinstance(module, nn.Linear) and id(module) not in seen:
            seen.add(id(module))
            out.append((path, module))
    return out


def select_linears(net: nn.Module, layers: Iterable[str] | None, what: str) -> list[tuple[str, nn.Linear]]:
    linears = find_linears(net)
    if not linears:
        raise ConfigError(f"{what}: {type(net).__name__} has no nn.Linear layer (outside its embedding tables)")
    if layers is None:
        return linears
    wanted = [layers] if isinstance(layers, str) else list(layers)
    paths = dict(linears)
    unknown = [p for p in wanted if p not in paths]
    if unknown:
        raise ConfigError(f"{what}: no nn.Linear at {unknown} (layers: {list(paths)})")
    return [(p, paths[p]) for p in dict.fromkeys(wanted)]


def transform_records(net: nn.Module) -> list[dict[str, Any]]:
    """What transforms were applied to ``net`` (JSON-ready), oldest first."""
    return [dict(r) for r in getattr(net, TRANSFORMS_ATTR, [])]


def append_record(net: nn.Module, record: Mapping[str, Any]) -> None:
    setattr(net, TRANSFORMS_ATTR, [*transform_records(net), dict(record)])


def check_fraction(value: Any, option: str) -> float:
    """A ratio strictly between 0 and 1, or ConfigError naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{option} must be a fraction strictly between 0 and 1, got {value!r}")
    return float(value)


__all__ = [
    "TABLE_NAME_ATTR",
    "TRANSFORMS_ATTR",
    "TableRef",
    "append_record",
    "check_fraction",
    "copy_with",
    "find_linears",
    "find_tables",
    "plan_fields",
    "record_specs",
    "require_plan",
    "select_linears",
    "select_tables",
    "tag_table",
    "transform_records",
]
