"""Replaying recorded transforms on a network rebuilt from an artifact.

Most transforms need no replay: quantized / pruned / mixed-dim tables are recorded in the
network's EmbeddingPlan and magnitude-pruned zeros are in the weights. Structural transforms
do: ``prune_neurons`` changed layer widths and ``quantize_mlp_dynamic`` swapped Linear layers
for int8 ones, neither of which the config knows about, so the rebuilt network is given that
structure *before* its weights load (:func:`prepare_for_load`). :func:`finish_load` runs after
the weights load; no current transform needs it, but loaders call it so one can.

Loading a compressed network is therefore: build from config -> ``prepare_for_load`` ->
load weights strictly -> ``finish_load``. :class:`TransformReplay` packages the two steps as the
``LoadHooks`` the estimators' and rankers' loaders take.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from turborec.compress._netwalk import TRANSFORMS_ATTR
from turborec.compress.prune import resize_hidden
from turborec.compress.quantize import replay_mlp_dynamic
from turborec.errors import ArtifactError, TurborecError

# transforms whose effect is fully in the plan or the weights
_IN_WEIGHTS = frozenset(
    {"quantize_embeddings", "prune_rows_by_frequency", "mixed_dims_by_frequency", "prune_magnitude"}
)
_BEFORE_LOAD = frozenset({"prune_neurons", "quantize_mlp_dynamic"})
KNOWN_TRANSFORMS = _IN_WEIGHTS | _BEFORE_LOAD


def _checked(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, record in enumerate(records):
        name = record.get("transform") if isinstance(record, Mapping) else None
        if name not in KNOWN_TRANSFORMS:
            raise ArtifactError(f"transform record {i} is unknown: {record!r} (known: {sorted(KNOWN_TRANSFORMS)})")
        out.append(dict(record))
    return out


def prepare_for_load(net: nn.Module, records: Sequence[Mapping[str, Any]]) -> None:
    """Give a freshly built network the structure the recorded transforms produced (in their order)."""
    checked = _checked(records)
    try:
        for record in checked:
            if record["transform"] == "prune_neurons":
                resize_hidden(net, dict(record["widths"]))
            elif record["transform"] == "quantize_mlp_dynamic":
                replay_mlp_dynamic(net, record)
    except (KeyError, TypeError, ValueError, TurborecError) as exc:
        if isinstance(exc, TurborecError):
            raise ArtifactError(f"cannot replay transform records: {exc}") from exc
        raise ArtifactError(f"malformed transform record ({exc!r})") from exc
    setattr(net, TRANSFORMS_ATTR, checked)


def finish_load(net: nn.Module, records: Sequence[Mapping[str, Any]]) -> None:
    """Steps after the weights load (none of the current transforms needs one); checks the records."""
    _checked(records)


class TransformReplay:
    """The ``LoadHooks`` of ``turborec.train.load`` / ``load_ranker``: replays transform records."""

    def prepare(self, net: nn.Module, records: list[dict[str, Any]]) -> None:
        prepare_for_load(net, records)

    def finish(self, net: nn.Module, records: list[dict[str, Any]]) -> None:
        finish_load(net, records)


__all__ = ["KNOWN_TRANSFORMS", "TransformReplay", "finish_load", "prepare_for_load"]
