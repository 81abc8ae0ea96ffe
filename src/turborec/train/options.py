"""Build estimators from string options (``--param dim=64``) with typed coercion."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any

from turborec.errors import ConfigError
from turborec.train.recommender import Recommender, estimator_class


def _coerce(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float) or default is None:
            return float(raw) if raw.lower() != "none" else None
        if isinstance(default, tuple):
            return tuple(int(x) for x in raw.split(",") if x.strip())
        return raw
    except ValueError:
        raise ConfigError(f"option {name}={raw!r}: expected a value like {default!r}") from None


def option_defaults(name: str) -> dict[str, Any]:
    cls = estimator_class(name)
    out: dict[str, Any] = {}
    for obj in (cls.config_class(), cls.default_train):
        for f in fields(obj):
            if f.name in ("embeddings",):
                continue
            out[f.name] = getattr(obj, f.name) if f.default is not MISSING or f.default_factory is not MISSING else None
    return out


def make_estimator(name: str, options: Mapping[str, str] | None = None, **typed: Any) -> Recommender:
    """``make_estimator('two-tower', {'dim': '64'}, epochs=5)``: string options are coerced by field type."""
    cls = estimator_class(name)
    defaults = option_defaults(name)
    parsed: dict[str, Any] = {}
    for key, raw in (options or {}).items():
        if key not in defaults:
            raise ConfigError(f"{name}: unknown option '{key}'; known: {', '.join(sorted(defaults))}")
        parsed[key] = _coerce(key, raw, defaults[key])
    return cls(**{**parsed, **typed})
