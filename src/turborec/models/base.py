"""What every network in ``turborec.models`` is: an ``nn.Module`` apart from its training.

Retrieval networks score users against the whole catalog through two narrow
methods, so the same network feeds full-ranking evaluation (dense scores), ANN
indexes (item vectors), serving (user vectors from live history) and export.

Inputs use one convention everywhere:
- ``users``: LongTensor [B] of user indices; -1 = anonymous / unknown user.
- ``history``: LongTensor [B, L] of the user's most recent item indices, oldest
  first, right-padded with -1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from turborec.errors import ConfigError


@dataclass(frozen=True)
class NetConfig:
    """Base for a network's typed config; subclasses add their fields."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if hasattr(v, "to_dict") else v
        return out

    @classmethod
    def from_dict(cls: type[C], obj: Mapping[str, Any]) -> C:
        known = {f.name: f for f in fields(cls)}
        unknown = set(obj) - set(known)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, value in obj.items():
            f = known[name]
            default = f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]
            if hasattr(default, "from_dict") and isinstance(value, Mapping):
                value = type(default).from_dict(value)  # type: ignore[union-attr]
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)


C = TypeVar("C", bound=NetConfig)


class RetrievalNet(nn.Module):
    """A network whose score of item i for a user is <user_vector, item_vector_i>.

    Subclasses implement :meth:`user_vectors` and :meth:`item_vectors`;
    ``factorized = False`` marks nets (EASE) whose vectors live in item space.
    """

    kind: ClassVar[str] = ""
    factorized: ClassVar[bool] = True
    uses_history: ClassVar[bool] = False
    config: NetConfig
    n_users: int
    n_items: int

    def user_vectors(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def item_vectors(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_items]."""
        return self.user_vectors(users, history) @ self.item_vectors().T


NetFactory = Callable[..., RetrievalNet]
_NETS: dict[str, type[nn.Module]] = {}


def register_net(kind: str) -> Callable[[type[N]], type[N]]:
    """Class decorator: make a network reconstructible from an artifact by its ``kind``."""

    def deco(cls: type[N]) -> type[N]:
        cls.kind = kind  # type: ignore[attr-defined]
        _NETS[kind] = cls
        return cls

    return deco


N = TypeVar("N", bound=nn.Module)


def net_class(kind: str) -> type[nn.Module]:
    _import_builtin_nets()
    try:
        return _NETS[kind]
    except KeyError:
        raise ConfigError(f"unknown network kind '{kind}' (known: {', '.join(sorted(_NETS))})") from None


def known_nets() -> list[str]:
    _import_builtin_nets()
    return sorted(_NETS)


def _import_builtin_nets() -> None:
    import importlib

    for mod in ("popularity", "mf", "two_tower", "ease", "mult_dae", "rankers"):
        try:
            importlib.import_module(f"turborec.models.{mod}")
        except ModuleNotFoundError as exc:  # a module still being written must not break the rest
            if exc.name != f"turborec.models.{mod}":
                raise


__all__ = ["NetConfig", "RetrievalNet", "known_nets", "load_unique_state", "net_class", "register_net", "unique_state"]


def unique_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict`` without aliases (a table shared by two towers is saved once)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, str, tuple[int, ...], tuple[int, ...]]] = set()
    for key, value in module.state_dict().items():
        if value.numel():
            ident = (value.data_ptr(), str(value.dtype), tuple(value.shape), tuple(value.stride()))
            if ident in seen:
                continue
            seen.add(ident)
        out[key] = value
    return out


def load_unique_state(module: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Inverse of :func:`unique_state`: every non-alias key must be present, nothing extra."""
    from turborec.errors import ArtifactError

    expected = set(unique_state(module))
    given = set(tensors)
    if expected != given:
        missing = sorted(expected - given)[:5]
        extra = sorted(given - expected)[:5]
        raise ArtifactError(f"weights do not match the network (missing {missing}, unexpected {extra})")
    try:
        module.load_state_dict(dict(tensors), strict=False)
    except RuntimeError as exc:
        raise ArtifactError(f"weights do not match the network: {str(exc).splitlines()[0]}") from exc
