"""Checkpoints of a sharded training job: one artifact per rank per epoch, and a pointer to the last good one.

Layout under the checkpoint directory::

    epoch-00003/rank-000/   manifest.json + weights.safetensors (an ordinary turborec artifact)
    epoch-00003/rank-001/
    latest.json             {"epoch": 3, "world_size": 2, "dir": "epoch-00003", "fingerprint": ...}

Every rank writes its own shards of the embedding tables and of their optimizer
state (and, on every rank, the replicated dense part), atomically; only when all
ranks are done does rank 0 move ``latest.json`` (write, fsync, rename), so a job
killed at any moment resumes from a checkpoint that is complete on every rank.
Resuming needs the same world size and sharding plan (the ``fingerprint``);
anything else is refused with a ConfigError naming both.
No pickle: tensors go to safetensors, everything else to JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from turborec._util.artifact import load_artifact, save_artifact
from turborec.errors import ArtifactError, ConfigError

KIND = "distributed-checkpoint"
LATEST = "latest.json"


@dataclass(frozen=True)
class Checkpoint:
    epoch: int
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]


# ----------------------------------------------------------- nested state <-> flat tensors
def _leaves(obj: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from _leaves(value, f"{prefix}.{i}")
    else:
        yield prefix, obj


def _is_sharded(value: Any) -> bool:
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    return isinstance(value, ShardedTensor)


def _shard_key(path: str, offsets: Any) -> str:
    return f"{path}@{','.join(str(int(o)) for o in offsets)}"


def flatten_tensors(state: Mapping[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """Every tensor in a nested state dict by path; a ShardedTensor gives its local shards (``path@r,c``)."""
    out: dict[str, torch.Tensor] = {}
    for path, value in _leaves(state, prefix):
        if _is_sharded(value):
            for shard in value.local_shards():
                out[_shard_key(path, shard.metadata.shard_offsets)] = shard.tensor.detach().cpu().clone()
        elif isinstance(value, torch.Tensor):
            out[path] = value.detach().cpu().clone()
    return out


@torch.no_grad()
def fill_tensors(template: Mapping[str, Any], prefix: str, saved: Mapping[str, torch.Tensor]) -> None:
    """Copy saved tensors into the matching tensors (and local shards) of ``template``, in place."""
    for path, value in _leaves(template, prefix):
        if _is_sharded(value):
            for shard in value.local_shards():
                key = _shard_key(path, shard.metadata.shard_offsets)
                shard.tensor.copy_(_need(saved, key, shard.tensor.shape))
        elif isinstance(value, torch.Tensor):
            value.copy_(_need(saved, path, value.shape))


def _need(saved: Mapping[str, torch.Tensor], key: str, shape: torch.Size) -> torch.Tensor:
    if key not in saved:
        raise ArtifactError(f"checkpoint has no tensor '{key}' (was it written by another model or plan?)")
    value = saved[key]
    if tuple(value.shape) != tuple(shape):
        raise ArtifactError(f"checkpoint tensor '{key}' has shape {tuple(value.shape)}, expected {tuple(shape)}")
    return value


def split_state(obj: Any, prefix: str) -> tuple[dict[str, torch.Tensor], Any]:
    """Any nested state (an optimizer's ``state_dict``, RNG states, lists of tensors) as (tensors by path,
    a JSON skeleton naming them). Mappings keep their key types (an optimizer's state is keyed by int)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[path] = value.detach().cpu().clone()
            return {"tensor": path}
        if isinstance(value, Mapping):
            return {"map": [[k, walk(v, f"{path}.{k}")] for k, v in value.items()]}
        if isinstance(value, list | tuple):
            return {"list": [walk(v, f"{path}.{i}") for i, v in enumerate(value)]}
        if value is None or isinstance(value, bool | int | float | str):
            return {"value": value}
        raise ConfigError(f"cannot checkpoint {type(value).__name__} at {path}")

    return tensors, walk(obj, prefix)


def join_state(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_state`."""
    if "tensor" in skeleton:
        key = skeleton["tensor"]
        if key not in tensors:
            raise ArtifactError(f"checkpoint has no tensor '{key}' (was it written by another model or plan?)")
        return tensors[key].clone()
    if "map" in skeleton:
        return {k: join_state(v, tensors) for k, v in skeleton["map"]}
    if "list" in skeleton:
        return [join_state(v, tensors) for v in skeleton["list"]]
    return skeleton["value"]


# ------------------------------------------------------------------------- on disk
def _epoch_dir(root: Path, epoch: int) -> Path:
    return root / f"epoch-{epoch:05d}"


def save_rank(root: Path, epoch: int, rank: int, tensors: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> Path:
    """Write this rank's part of the checkpoint for ``epoch`` (atomic)."""
    return save_artifact(_epoch_dir(root, epoch) / f"rank-{rank:03d}", kind=KIND, config={"epoch": epoch, "rank": rank,
                         **state}, tensors=dict(tensors) or {"_empty": torch.zeros(0)})


def publish(root: Path, epoch: int, world_size: int, fingerprint: str, keep: int = 2) -> None:
    """Rank 0, after every rank saved ``epoch``: point ``latest.json`` at it and drop older epochs."""
    tmp = root / f".{LATEST}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"epoch": epoch, "world_size": world_size, "dir": _epoch_dir(root, epoch).name,
                   "fingerprint": fingerprint}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / LATEST)
    old = sorted(p for p in root.glob("epoch-*") if p.is_dir() and p.name < _epoch_dir(root, epoch).name)
    for path in old[: max(len(old) - (keep - 1), 0)]:
        shutil.rmtree(path, ignore_errors=True)


def latest(root: Path) -> dict[str, Any] | None:
    path = root / LATEST
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        return {"epoch": int(info["epoch"]), "world_size": int(info["world_size"]), "dir": str(info["dir"]),
                "fingerprint": str(info["fingerprint"])}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable checkpoint pointer ({exc})") from exc


def load_rank(root: Path, rank: int, world_size: int, fingerprint: str) -> Checkpoint | None:
    """This rank's part of the latest complete checkpoint, or None when there is none yet."""
    info = latest(root)
    if info is None:
        return None
    if info["world_size"] != world_size or info["fingerprint"] != fingerprint:
        raise ConfigError(
            f"{root}: the checkpoint was written by {info['world_size']} processes with plan {info['fingerprint']}; "
            f"this job has {world_size} with plan {fingerprint}. Resume with the same --nproc and sharding, "
            "or use another --checkpoint-dir"
        )
    art = load_artifact(root / info["dir"] / f"rank-{rank:03d}", kinds=(KIND,))
    tensors = art.torch_tensors()
    tensors.pop("_empty", None)
    return Checkpoint(int(info["epoch"]), tensors, art.config)
