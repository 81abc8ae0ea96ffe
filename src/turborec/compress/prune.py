"""Pruning of MLP layers: unstructured (magnitude, masked) and structured (whole hidden neurons).

Magnitude pruning zeroes weights in place and keeps a boolean mask per layer as a
*non-persistent* buffer (``weight_mask``), so the state dict is unchanged and the zeros
themselves are what an artifact stores. During fine-tuning, :func:`mask_gradients` keeps the
pruned weights' gradients at zero and :func:`enforce_masks` (call it after each optimizer step)
re-zeroes them under any optimizer.

Neuron pruning makes layers physically smaller: a hidden unit between two ``nn.Linear`` of an
``nn.Sequential`` (with only activations, dropout or BatchNorm1d between) is removed from the
first layer's outputs, the BatchNorm and the next layer's inputs. The new widths are recorded
so a network rebuilt from its config can be resized before its weights are loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from turborec.compress._netwalk import (
    _walk,
    append_record,
    check_fraction,
    copy_with,
    select_linears,
)
from turborec.errors import ConfigError
from turborec.models.compact import is_table

MASK = "weight_mask"
SCOPES = ("layer", "global")

# modules that act on each hidden unit separately, so a unit can be removed through them
_ELEMENTWISE = (
    nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Hardswish, nn.Mish, nn.Softplus,
    nn.Dropout, nn.Identity,
)


# ------------------------------------------------------------------ magnitude (unstructured)
def prune_magnitude(
    net: nn.Module, amount: float, *, scope: str = "layer", layers: Iterable[str] | None = None, inplace: bool = False
) -> nn.Module:
    """Zero the ``amount`` fraction of smallest-|w| weights of the Linear layers.

    ``scope='layer'`` prunes that fraction of every layer; ``'global'`` ranks all the
    selected layers' weights together. Biases are kept. Pruning an already pruned layer
    keeps its old zeros pruned (masks combine).
    """
    amount = check_fraction(amount, "prune_magnitude amount")
    if scope not in SCOPES:
        raise ConfigError(f"prune_magnitude: scope must be one of {list(SCOPES)}, got {scope!r}")
    paths = [p for p, _ in select_linears(net, layers, "prune_magnitude")]
    out = copy_with(net, {}, inplace)
    linears = [_linear_at(out, p) for p in paths]
    weights = [lin.weight.detach() for lin in linears]
    if scope == "global":
        flat = torch.cat([w.abs().flatten() for w in weights])
        keep_flat = _keep_largest(flat, amount)
        masks = list(torch.split(keep_flat, [w.numel() for w in weights]))
        masks = [m.view_as(w) for m, w in zip(masks, weights)]
    else:
        masks = [_keep_largest(w.abs().flatten(), amount).view_as(w) for w in weights]
    for lin, mask in zip(linears, masks):
        old = getattr(lin, MASK, None)
        if isinstance(old, torch.Tensor):
            mask = mask & old
        with torch.no_grad():
            lin.weight.mul_(mask)
        lin.register_buffer(MASK, mask, persistent=False)
    mask_gradients(out)
    append_record(out, {"transform": "prune_magnitude", "amount": amount, "scope": scope, "layers": paths})
    return out


def _linear_at(net: nn.Module, path: str) -> nn.Linear:
    module = net.get_submodule(path)
    assert isinstance(module, nn.Linear)
    return module


def _keep_largest(values: torch.Tensor, amount: float) -> torch.Tensor:
    """Boolean mask keeping all but the round(amount * n) smallest values (ties broken by position)."""
    n_prune = round(amount * values.numel())
    keep = torch.ones(values.numel(), dtype=torch.bool)
    if n_prune:
        keep[torch.argsort(values, stable=True)[:n_prune]] = False
    return keep


def _masked_layers(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if isinstance(m, nn.Linear) and isinstance(getattr(m, MASK, None), torch.Tensor)]


def mask_gradients(net: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
    """Keep pruned weights' gradients at zero (hooks do not survive ``deepcopy``: call again on a copy)."""
    handles = []
    for lin in _masked_layers(net):
        mask = getattr(lin, MASK)
        handles.append(lin.weight.register_hook(lambda grad, mask=mask: grad * mask))
    return handles


@torch.no_grad()
def enforce_masks(net: nn.Module) -> int:
    """Re-zero pruned weights (the fine-tuning hook: call after each optimizer step); returns the layer count."""
    layers = _masked_layers(net)
    for lin in layers:
        lin.weight.mul_(getattr(lin, MASK))
    return len(layers)


def remove_masks(net: nn.Module) -> None:
    """Drop the masks once fine-tuning is over (the zeros stay in the weights)."""
    for lin in _masked_layers(net):
        delattr(lin, MASK)


def sparsity(net: nn.Module) -> float:
    """Fraction of exactly-zero weights over the Linear layers outside embedding tables."""
    total = zeros = 0
    for _, module in _walk(net, "", is_table):
        if isinstance(module, nn.Linear):
            total += module.weight.numel()
            zeros += int((module.weight == 0).sum())
    return zeros / total if total else 0.0


# ------------------------------------------------------------------ neurons (structured)
@dataclass(frozen=True)
class HiddenLayer:
    """A prunable hidden width: ``first`` -> (elementwise / BatchNorm1d) -> ``second`` inside ``seq``."""

    path: str  # path of ``first``: the key of the recorded widths
    seq: nn.Sequential
    first: int
    norms: tuple[int, ...]
    second: int

    @property
    def width(self) -> int:
        layer = self.seq[self.first]
        assert isinstance(layer, nn.Linear)
        return layer.out_features


def find_hidden_layers(net: nn.Module) -> list[HiddenLayer]:
    out = []
    for path, module in _walk(net, "", is_table):
        if not isinstance(module, nn.Sequential) or is_table(module):
            continue
        children = list(module)
        for i, child in enumerate(children):
            if not isinstance(child, nn.Linear):
                continue
            norms: list[int] = []
            for j in range(i + 1, len(children)):
                nxt = children[j]
                if isinstance(nxt, nn.Linear):
                    out.append(HiddenLayer(f"{path}.{i}", module, i, tuple(norms), j))
                    break
                if isinstance(nxt, nn.BatchNorm1d):
                    norms.append(j)
                elif not isinstance(nxt, _ELEMENTWISE):
                    break
    return out


def _unit_importance(hidden: HiddenLayer) -> torch.Tensor:
    """||incoming weights and bias|| * ||outgoing weights|| of each hidden unit."""
    first, second = hidden.seq[hidden.first], hidden.seq[hidden.second]
    assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
    incoming = first.weight.detach().pow(2).sum(1)
    if first.bias is not None:
        incoming = incoming + first.bias.detach().pow(2)
    outgoing = second.weight.detach().pow(2).sum(0)
    return (incoming * outgoing).sqrt()


@torch.no_grad()
def _shrink(hidden: HiddenLayer, keep: torch.Tensor) -> None:
    """Rebuild the layers around ``hidden`` keeping only units ``keep`` (sorted indices)."""
    seq = hidden.seq
    first, second = seq[hidden.first], seq[hidden.second]
    assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
    k = len(keep)
    new_first = nn.Linear(first.in_features, k, bias=first.bias is not None).to(first.weight)
    new_first.weight.copy_(first.weight[keep])
    if first.bias is not None:
        new_first.bias.copy_(first.bias[keep])
    new_second = nn.Linear(k, second.out_features, bias=second.bias is not None).to(second.weight)
    new_second.weight.copy_(second.weight[:, keep])
    if second.bias is not None:
        new_second.bias.copy_(second.bias)
    seq[hidden.first], seq[hidden.second] = new_first, new_second
    for j in hidden.norms:
        bn = seq[j]
        assert isinstance(bn, nn.BatchNorm1d)
        new_bn = nn.BatchNorm1d(k, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                                track_running_stats=bn.track_running_stats).to(first.weight)
        for name in ("weight", "bias", "running_mean", "running_var"):
            src = getattr(bn, name)
            if src is not None:
                getattr(new_bn, name).copy_(src[keep])
        if bn.num_batches_tracked is not None and new_bn.num_batches_tracked is not None:
            new_bn.num_batches_tracked.copy_(bn.num_batches_tracked)
        new_bn.train(bn.training)
        seq[j] = new_bn


def prune_neurons(
    net: nn.Module, amount: float, *, layers: Iterable[str] | None = None, inplace: bool = False
) -> nn.Module:
    """Remove the ``amount`` fraction of least important hidden units of each prunable hidden layer.

    ``layers``: paths of the first Linear of each hidden layer to prune (default: all of them).
    Importance is ||incoming weights|| * ||outgoing weights||; at least one unit is kept.
    """
    amount = check_fraction(amount, "prune_neurons amount")
    hidden = {h.path: h for h in find_hidden_layers(net)}
    if not hidden:
        raise ConfigError(
            f"prune_neurons: {type(net).__name__} has no hidden layer to prune "
            "(needs nn.Linear -> activation -> nn.Linear inside an nn.Sequential)"
        )
    wanted = list(hidden) if layers is None else ([layers] if isinstance(layers, str) else list(layers))
    unknown = [p for p in wanted if p not in hidden]
    if unknown:
        raise ConfigError(f"prune_neurons: no prunable hidden layer at {unknown} (prunable: {list(hidden)})")
    out = copy_with(net, {}, inplace)
    out_hidden = {h.path: h for h in find_hidden_layers(out)}
    widths: dict[str, int] = {}
    for path in wanted:
        h = out_hidden[path]
        keep = max(1, round(h.width * (1.0 - amount)))
        order = torch.argsort(_unit_importance(h), descending=True, stable=True)
        _shrink(h, order[:keep].sort().values)
        widths[path] = keep
    append_record(out, {"transform": "prune_neurons", "amount": amount, "widths": widths})
    return out


def resize_hidden(net: nn.Module, widths: dict[str, Any]) -> None:
    """Give the hidden layers at ``widths``' paths those widths (first units kept): replays
    :func:`prune_neurons` on a freshly built network so its recorded weights load strictly."""
    hidden = {h.path: h for h in find_hidden_layers(net)}
    for path, width in widths.items():
        if path not in hidden:
            raise ConfigError(f"recorded prune_neurons names no hidden layer at '{path}' (have: {list(hidden)})")
        current = hidden[path].width
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= current:
            raise ConfigError(f"recorded width {width!r} for '{path}' does not fit its {current} units")
        _shrink(hidden[path], torch.arange(width))


__all__ = [
    "MASK",
    "HiddenLayer",
    "enforce_masks",
    "find_hidden_layers",
    "mask_gradients",
    "prune_magnitude",
    "prune_neurons",
    "remove_masks",
    "resize_hidden",
    "sparsity",
]
