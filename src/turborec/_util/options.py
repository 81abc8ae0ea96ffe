"""One parser for option strings (``--param dim=64``, ``TURBOREC_SERVE_MAX_BATCH=32``, ``--distill deep=64,32``).

A value is typed by the dataclass field it sets: its annotation (``int``,
``float``, ``bool``, ``str``, ``Path``, ``tuple[int, ...]``, ``Literal[...]``,
``X | None``) or, when the annotation says nothing useful, its default's type.
Every bad value is a :class:`~turborec.errors.ConfigError` of one line naming the
option, the value and what is allowed; ranges are the config's own checks
(``__post_init__``), run when the parsed values build it (:func:`build_config`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from turborec.errors import ConfigError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NONE = ("none", "null")

T = TypeVar("T")


def _args_of(kind: Any) -> tuple[Any, ...]:
    return tuple(typing.get_args(kind))


def _is_union(kind: Any) -> bool:
    return typing.get_origin(kind) in (Union, types.UnionType)


def describe(kind: Any) -> str:
    """What a value of ``kind`` looks like, for error messages."""
    if _is_union(kind):
        return " or ".join(describe(a) for a in _args_of(kind))
    if kind is type(None):
        return "none"
    if kind is bool:
        return "true/false"
    if kind is int:
        return "an integer"
    if kind is float:
        return "a number"
    if kind is str:
        return "a string"
    if kind is Path:
        return "a path"
    origin = typing.get_origin(kind)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in _args_of(kind))
    if origin is tuple:
        inner = _args_of(kind)[:1] or (int,)
        return f"comma-separated {describe(inner[0]).removeprefix('an ').removeprefix('a ')}s (e.g. 64,32)"
    if origin in (dict, Mapping) or kind in (dict, Mapping):
        return "name:value pairs (e.g. a:1,b:2)"
    return getattr(kind, "__name__", str(kind))


def _convert(raw: str, kind: Any) -> Any:
    """``raw`` as a value of ``kind``; ValueError when it is not one."""
    text = raw.strip()
    if _is_union(kind):
        members = _args_of(kind)
        if type(None) in members and (text.lower() in _NONE or text == ""):
            return None
        for member in members:  # first member that takes the text (int before float before str)
            if member is type(None):
                continue
            try:
                return _convert(raw, member)
            except ValueError:
                continue
        raise ValueError(raw)
    if kind is type(None):
        if text.lower() in _NONE or text == "":
            return None
        raise ValueError(raw)
    if kind is bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(raw)
    if kind is int:
        return int(text)
    if kind is float:
        value = float(text)
        if value != value:  # NaN passes every range check; refuse it here
            raise ValueError(raw)
        return value
    if kind is str or kind is Any:
        return raw
    if kind is Path:
        if not text:
            raise ValueError(raw)
        return Path(text)
    origin = typing.get_origin(kind)
    if origin is Literal:
        for allowed in _args_of(kind):
            if text == str(allowed):
                return allowed
        raise ValueError(raw)
    if origin is tuple:
        inner = _args_of(kind)[:1] or (int,)
        return tuple(_convert(part, inner[0]) for part in text.split(",") if part.strip())
    if origin in (dict, Mapping) or kind in (dict, Mapping):
        value_kind = (_args_of(kind) or (str, Any))[1]
        out = {}
        for part in text.split(","):
            if not part.strip():
                continue
            key, sep, val = part.partition(":")
            if not sep or not key.strip():
                raise ValueError(raw)
            out[key.strip()] = _convert(val, value_kind)
        return out
    raise ValueError(raw)


def parse_value(option: str, raw: Any, kind: Any, *, what: str = "option") -> Any:
    """Parse ``raw`` (a string; anything else is returned as is) as ``kind``; one-line ConfigError if it is not one."""
    if not isinstance(raw, str):
        return raw
    try:
        return _convert(raw, kind)
    except ValueError:
        raise ConfigError(f"{what} {option}={raw!r}: expected {describe(kind)}") from None


def _kind_from_default(default: Any) -> Any:
    if default is None or default is dataclasses.MISSING:
        return str
    if isinstance(default, tuple):
        return tuple[type(default[0]) if default else int, ...]  # type: ignore[misc]
    return type(default)


def field_kinds(cls: type) -> dict[str, Any]:
    """Field name -> the kind its strings parse as, for a dataclass."""
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that cannot be resolved: fall back to the defaults
        hints = {}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        kind = hints.get(f.name)
        if kind is None or kind is Any:
            default = f.default if f.default is not dataclasses.MISSING else dataclasses.MISSING
            kind = _kind_from_default(default)
        out[f.name] = kind
    return out


def parse_fields(
    cls: type, values: Mapping[str, Any], *, what: str = "option", known: Iterable[str] | None = None
) -> dict[str, Any]:
    """Parse string ``values`` by ``cls``'s field types; an unknown name is a one-line ConfigError
    listing the known ones (``known``: names accepted elsewhere, for that list)."""
    kinds = field_kinds(cls)
    unknown = sorted(set(values) - set(kinds))
    if unknown:
        names = sorted(set(kinds) | set(known or ()))
        raise ConfigError(f"{what}: unknown option {unknown[0]!r}; known: {', '.join(names)}")
    return {name: parse_value(name, raw, kinds[name], what=what) for name, raw in values.items()}


def build_config(cls: type[T], values: Mapping[str, Any], *, what: str = "option") -> T:
    """``cls(**parsed values)``: types from :func:`parse_fields`, ranges from the config's own checks."""
    parsed = parse_fields(cls, values, what=what)
    try:
        return cls(**parsed)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None


__all__ = ["build_config", "describe", "field_kinds", "parse_fields", "parse_value"]
