"""Runner kinds by name: ``make_runner("onnx-int8", module, example_inputs, threads=1)``."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from turborec.backends.base import Inputs, Runner, Tolerance
from turborec.errors import ConfigError

_RUNNERS: dict[str, type[Runner]] = {}
# importing a module registers its kinds; the GPU package is optional (absent without CUDA work)
_BUILTIN_MODULES = ("turborec.backends.torch_runners", "turborec.backends.onnx_runners", "turborec.backends.gpu")


def register_runner(kind: str) -> Callable[[type[Runner]], type[Runner]]:
    """Class decorator: make a :class:`Runner` subclass available to :func:`make_runner` as ``kind``."""

    def deco(cls: type[Runner]) -> type[Runner]:
        cls.kind = kind
        _RUNNERS[kind] = cls
        return cls

    return deco


def _import_builtin_runners() -> None:
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a package still being written must not break the rest
            if exc.name != module:
                raise


def runner_class(kind: str) -> type[Runner]:
    _import_builtin_runners()
    try:
        return _RUNNERS[kind]
    except KeyError:
        raise ConfigError(f"unknown runner kind '{kind}' (known: {', '.join(sorted(_RUNNERS))})") from None


def runner_kinds() -> dict[str, Tolerance]:
    """Every registered kind and its documented tolerance against eager PyTorch."""
    _import_builtin_runners()
    return {kind: cls.tolerance for kind, cls in sorted(_RUNNERS.items())}


def make_runner(
    kind: str,
    module: nn.Module,
    example_inputs: Inputs,
    threads: int = 1,
    *,
    max_batch: int | None = None,
    warmup: bool = False,
    **options: Any,
) -> Runner:
    """Build a runner of ``kind`` (see :func:`runner_kinds`); ``options`` are the kind's own keywords.

    ``warmup=True`` runs a few batches first (for ``torch-compile`` this is the 10-15 s compilation).
    """
    cls = runner_class(kind)
    accepted = {
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    unknown = sorted(set(options) - accepted)
    if unknown:
        own = sorted(accepted - {"threads", "max_batch"})
        raise ConfigError(f"runner '{kind}' has no option(s) {unknown} (its options: {', '.join(own) or 'none'})")
    runner = cls(module, example_inputs, threads=threads, max_batch=max_batch, **options)
    if warmup:
        runner.warmup()
    return runner


__all__ = ["make_runner", "register_runner", "runner_class", "runner_kinds"]
