"""Optional-dependency detection with an actionable error."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from turborec.errors import DependencyError


def has_module(name: str) -> bool:
    """True when ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`DependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyError(package or module, extra) from exc
