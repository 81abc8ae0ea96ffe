"""Which class implements which spec family, and the two entry points built on it."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

from turborec.errors import ConfigError
from turborec.retrieval.base import Index
from turborec.retrieval.spec import IndexSpec, parse_spec

_INDEXES: dict[str, type[Index]] = {}
_BUILTIN_MODULES = ("turborec.retrieval.exact", "turborec.retrieval.faiss_index")


def register_index(*families: str) -> Callable[[type[Index]], type[Index]]:
    """Class decorator: the class builds every spec of the given families."""

    def deco(cls: type[Index]) -> type[Index]:
        for family in families:
            _INDEXES[family] = cls
        return cls

    return deco


def index_class(family: str) -> type[Index]:
    for module in _BUILTIN_MODULES:  # importing registers; FAISS itself is only imported on construction
        importlib.import_module(module)
    try:
        return _INDEXES[family]
    except KeyError:
        raise ConfigError(
            f"no index implementation for family '{family}' (known: {', '.join(sorted(_INDEXES))})"
        ) from None


def make_index(spec: str | IndexSpec, dim: int, metric: str = "ip") -> Index:
    """Build an empty index from a spec such as ``"Exact"``, ``"HNSW32|efSearch=128"`` or ``"IVF1024,PQ16"``."""
    parsed = parse_spec(spec)
    index = index_class(parsed.family)(parsed.with_params(), dim, metric)
    if parsed.params:
        index.set_params(**parsed.params_dict)
    return index


def load_index(path: str | os.PathLike[str]) -> Index:
    """Read any index written by :meth:`Index.save`."""
    return Index.load(path)


__all__ = ["index_class", "load_index", "make_index", "register_index"]
