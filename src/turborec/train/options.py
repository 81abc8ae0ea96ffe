"""Build estimators from string options (``--param dim=64``), typed and range-checked.

Strings are parsed by :mod:`turborec._util.options` (the one option parser) by the
type of the config field they set. Net configs of retrieval models hold no checks of
their own, so the common ranges are checked here, before any data is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any

from turborec._util.options import field_kinds, parse_value
from turborec.errors import ConfigError
from turborec.models.base import NetConfig
from turborec.train.recommender import Recommender, estimator_class

# option -> (lowest allowed, whether the lowest is allowed, highest allowed or None); sizes must be >= 1
_SIZES = ("dim", "hidden", "epochs", "batch_size", "history_len", "eval_every", "threads", "n_factors", "stop_window")
_RANGES: dict[str, tuple[float, bool, float | None]] = {
    **{name: (1, True, None) for name in _SIZES},
    "lr": (0.0, False, None),
    "temperature": (0.0, False, None),
    "dropout": (0.0, True, 0.999999),
    "history_dropout": (0.0, True, 0.999999),
    "weight_average": (0.0, True, 0.999999),
    "weight_decay": (0.0, True, None),
    "patience": (0.0, True, None),
    "stop_tolerance": (0.0, True, 0.999999),
    "max_steps_per_epoch": (0.0, True, None),
    "sampled_negatives": (0.0, True, None),
    "full_softmax_below": (0.0, True, None),
    "max_seconds": (0.0, False, None),
    "l2": (0.0, True, None),
    "reg": (0.0, True, None),
}


def check_range(name: str, value: Any) -> None:
    """One-line ConfigError when a known option's value is outside its range (tuples: every element)."""
    bounds = _RANGES.get(name)
    if bounds is None or value is None or isinstance(value, (bool, str)):
        return
    low, inclusive, high = bounds
    for v in value if isinstance(value, tuple) else (value,):
        bad = not math.isfinite(v) or (v < low if inclusive else v <= low) or (high is not None and v > high)
        if bad:
            allowed = f"{'>=' if inclusive else '>'} {low:g}" + (f" and < {math.ceil(high):g}" if high else "")
            raise ConfigError(f"option {name}={value!r}: must be {allowed}")


def option_kinds(name: str) -> dict[str, Any]:
    """Every ``--param`` a model takes -> the type its value parses as."""
    cls = estimator_class(name)
    out: dict[str, Any] = {}
    for obj_cls in (cls.config_class, type(cls.default_train)):
        # nested configs (embedding plans, an ensemble's member configs) are built in Python, not parsed
        out.update({k: v for k, v in field_kinds(obj_cls).items()
                    if k != "embeddings" and not (isinstance(v, type) and issubclass(v, NetConfig))})
    return out


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
    """``make_estimator('two-tower', {'dim': '64'}, epochs=5)``: string options are parsed by field type."""
    cls = estimator_class(name)
    kinds = option_kinds(name)
    parsed: dict[str, Any] = {}
    for key, raw in (options or {}).items():
        if key not in kinds:
            raise ConfigError(f"{name}: unknown option '{key}'; known: {', '.join(sorted(kinds))}")
        parsed[key] = parse_value(key, raw, kinds[key])
    for key, value in {**parsed, **typed}.items():
        check_range(key, value)
    return cls(**{**parsed, **typed})
