"""How much memory a model takes: bytes of its tensors, and the resident memory a load adds.

:func:`model_nbytes` counts what the network holds (parameters, buffers, packed int8 weights).
:func:`measure_load_rss` loads an artifact in a fresh Python process and reads the kernel's
resident-set figures (``/proc/self/status``) before and after, which is what a server pays.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from turborec._util.artifact import load_artifact, save_artifact
from turborec.errors import ArtifactError, ConfigError, TurborecError
from turborec.models.compact import is_table, table_spec
from turborec.models.compact_linear import Int8DynamicLinear
from turborec.models.embeddings import EmbeddingPlan, EmbeddingSpec

TABLE_ARTIFACT_KIND = "embedding-table"
_LOADER = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_MODULE = re.compile(r"^[A-Za-z_][\w.]*$")
_MARKER = "TURBOREC_RSS "


def _tensor_nbytes(t: torch.Tensor | None) -> int:
    if t is None:
        return 0
    if hasattr(t, "__tensor_flatten__"):  # tensor subclasses (torchao) report the float dtype; count their parts
        names, _ = t.__tensor_flatten__()
        return sum(_tensor_nbytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def model_nbytes(net: nn.Module) -> int:
    """Bytes held by ``net``'s parameters and buffers (each shared tensor once), plus the int8
    weights of dynamically quantized Linear layers, which are neither."""
    return net_memory(net).total


@dataclass(frozen=True)
class NetMemory:
    """Where a network's bytes are: embedding ``tables``, other ``layers`` (MLPs, float buffers),
    and ``data`` (integer buffers outside the tables, such as per-item feature tokens: inputs the
    network carries, not weights)."""

    tables: int
    layers: int
    data: int

    @property
    def model(self) -> int:
        """The weights: tables plus layers (what compression shrinks)."""
        return self.tables + self.layers

    @property
    def total(self) -> int:
        return self.tables + self.layers + self.data


def net_memory(net: nn.Module) -> NetMemory:
    """Bytes of ``net`` split into tables, layers and data buffers (see :class:`NetMemory`)."""
    seen: set[int] = set()

    def fresh(t: torch.Tensor | None) -> int:
        if t is None or id(t) in seen:
            return 0
        seen.add(id(t))
        return _tensor_nbytes(t)

    tables = sum(fresh(t) for m in net.modules() if is_table(m) for t in [*m.parameters(), *m.buffers()])
    layers = data = 0
    for module in net.modules():
        if isinstance(module, Int8DynamicLinear):
            layers += module.nbytes()
        packed = getattr(module, "_packed_params", None)  # torch.ao dynamic-quantized Linear
        weight_bias = getattr(packed, "_weight_bias", None)
        if callable(weight_bias):
            weight, bias = weight_bias()
            layers += _tensor_nbytes(weight) + _tensor_nbytes(bias)
    for t in net.parameters():
        layers += fresh(t)
    for b in net.buffers():
        if b.dtype.is_floating_point or b.dtype.is_complex:
            layers += fresh(b)
        else:
            data += fresh(b)
    return NetMemory(tables=tables, layers=layers, data=data)


@dataclass(frozen=True)
class LoadMemory:
    """Resident memory of a fresh process around one load (bytes)."""

    before: int  # VmRSS after imports, before loading
    after: int  # VmRSS with the loaded object alive
    peak: int  # VmHWM: the process's high-water mark, loading included
    anon_after: int  # RssAnon with the object alive (heap: what the load allocated)
    file_after: int  # RssFile with the object alive (mapped files, e.g. an mmapped weights file)

    @property
    def added(self) -> int:
        """Resident bytes the loaded object keeps."""
        return self.after - self.before

    @property
    def peak_added(self) -> int:
        """Extra resident bytes at the worst moment of loading."""
        return self.peak - self.before


_SCRIPT = """
import gc, importlib, json, sys
def status():
    out = {}
    with open('/proc/self/status') as f:
        for line in f:
            key, _, value = line.partition(':')
            if key in ('VmRSS', 'VmHWM', 'RssAnon', 'RssFile'):
                out[key] = int(value.split()[0]) * 1024
    return out
module, _, attr = sys.argv[1].partition(':')
load = getattr(importlib.import_module(module), attr)
import torch
for name in sys.argv[3:]:  # modules the loader imports lazily: their code is not the loaded object
    importlib.import_module(name)
gc.collect()
before = status()
obj = load(sys.argv[2])
gc.collect()
after = status()
print(MARKER + json.dumps({'before': before, 'after': after}), flush=True)
""".replace("MARKER", repr(_MARKER))


def measure_load_rss(
    path: str | os.PathLike[str],
    loader: str = "turborec.train:load",
    *,
    preload: Sequence[str] = (),
    timeout: float = 300.0,
) -> LoadMemory:
    """Load ``path`` with ``loader`` ('module:function', called with the path) in a fresh Python
    process and return its resident memory before and after (Linux only).

    ``preload``: modules imported before the "before" reading, so that code the loader imports
    lazily (tens of MB for torch extensions and scipy) is not counted as the loaded object."""
    bad = [m for m in preload if not _MODULE.match(m)]
    if bad:
        raise ConfigError(f"measure_load_rss: preload names must be dotted module names, got {bad}")
    if not _LOADER.match(loader):
        raise ConfigError(f"measure_load_rss: loader must look like 'package.module:function', got {loader!r}")
    if not Path("/proc/self/status").is_file():
        raise ConfigError("measure_load_rss: resident memory is read from /proc/self/status, which needs Linux")
    target = Path(path)
    if not target.exists():
        raise ArtifactError(f"{target}: no artifact here")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT, loader, str(target), *preload],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ArtifactError(f"{target}: loading with {loader} took longer than {timeout:.0f} s") from exc
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MARKER)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ArtifactError(f"{target}: loading with {loader} in a fresh process failed: {tail}")
    data = json.loads(lines[-1][len(_MARKER):])
    before, after = data["before"], data["after"]
    return LoadMemory(
        before=before["VmRSS"], after=after["VmRSS"], peak=after["VmHWM"],
        anon_after=after.get("RssAnon", 0), file_after=after.get("RssFile", 0),
    )


def save_table_artifact(path: str | os.PathLike[str], table: nn.Module, name: str = "table") -> Path:
    """Save one table module (its spec and state) as an artifact, for per-table measurements."""
    spec = table_spec(table)
    num, dim = getattr(table, "num_embeddings", None), getattr(table, "embedding_dim", None)
    if not isinstance(num, int) or not isinstance(dim, int):
        raise ConfigError(f"save_table_artifact: {type(table).__name__} has no integer num_embeddings / embedding_dim")
    config = {"name": name, "num": num, "dim": dim, "spec": spec.to_dict()}
    return save_artifact(path, kind=TABLE_ARTIFACT_KIND, config=config, tensors=dict(table.state_dict()))


def load_table_artifact(path: str | os.PathLike[str]) -> nn.Module:
    """Rebuild a table from its spec and load its state strictly (the path an artifact's tables take)."""
    art = load_artifact(path, kinds=(TABLE_ARTIFACT_KIND,))
    cfg = art.config
    try:
        spec = EmbeddingSpec.from_dict(cfg["spec"])
        table = EmbeddingPlan(default=spec).build(str(cfg["name"]), int(cfg["num"]), int(cfg["dim"]))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, TurborecError):
            raise
        raise ArtifactError(f"{path}: malformed table config ({exc})") from exc
    try:
        table.load_state_dict(art.torch_tensors(), strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: weights do not match the table: {str(exc).splitlines()[0]}") from exc
    return table


__all__ = [
    "TABLE_ARTIFACT_KIND",
    "LoadMemory",
    "NetMemory",
    "load_table_artifact",
    "measure_load_rss",
    "model_nbytes",
    "net_memory",
    "save_table_artifact",
]
