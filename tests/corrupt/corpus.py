"""The corrupted-artifact corpus: each case is a function that damages a copy of a good artifact in one way.

Cases marked ``resigned`` recompute the manifest's checksums afterwards, as a tool that writes bad contents
(or an attacker) would: those must be caught by *content* validation, not by the checksums.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

WEIGHTS = "weights.safetensors"


@dataclass(frozen=True)
class Case:
    name: str
    damage: Callable[[Path], None]
    expect: str  # a phrase the one-line error must contain
    resigned: bool  # checksums recomputed after the damage


def resign(root: Path) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"] = {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in manifest["files"]}
    (root / "manifest.json").write_text(json.dumps(manifest))


def _edit_tensors(root: Path, edit: Callable[[dict[str, np.ndarray]], None]) -> None:
    tensors = dict(load_file(str(root / WEIGHTS)))
    edit(tensors)
    save_file(tensors, str(root / WEIGHTS))


def _edit_manifest(root: Path, edit: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    manifest = json.loads((root / "manifest.json").read_text())
    edit(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


def byte_flip(root: Path) -> None:
    data = bytearray((root / WEIGHTS).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / WEIGHTS).write_bytes(bytes(data))


def truncate(root: Path) -> None:
    data = (root / WEIGHTS).read_bytes()
    (root / WEIGHTS).write_bytes(data[: len(data) // 2])


def header_flip(root: Path) -> None:
    """One byte of the safetensors JSON header (after the 8-byte length) made invalid."""
    data = bytearray((root / WEIGHTS).read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    at = 8 + header_len // 2
    data[at] = ord("\x01")
    (root / WEIGHTS).write_bytes(bytes(data))


def header_length(root: Path) -> None:
    """The header's declared length made enormous (a parser that trusted it would allocate it)."""
    data = bytearray((root / WEIGHTS).read_bytes())
    data[:8] = (1 << 40).to_bytes(8, "little")
    (root / WEIGHTS).write_bytes(bytes(data))


def wrong_checksum(root: Path) -> None:
    _edit_manifest(root, lambda m: m["files"].__setitem__(WEIGHTS, "0" * 64))


def missing_file(root: Path) -> None:
    (root / "vocab" / "items.json").unlink()


def corrupt_manifest(root: Path) -> None:
    (root / "manifest.json").write_text('{"format_version": 1, "files": {')


def corrupt_vocab(root: Path) -> None:
    (root / "vocab" / "items.json").write_text("[1, 2,")


def _first_float(tensors: dict[str, np.ndarray]) -> str:
    return next(k for k, v in tensors.items() if k.startswith("net.") and v.dtype.kind == "f" and v.ndim == 2)


def nan_weights(root: Path) -> None:
    def edit(t: dict[str, np.ndarray]) -> None:
        name = _first_float(t)
        t[name] = t[name].copy()
        t[name][3] = np.nan

    _edit_tensors(root, edit)


def inf_weights(root: Path) -> None:
    def edit(t: dict[str, np.ndarray]) -> None:
        name = _first_float(t)
        t[name] = t[name].copy()
        t[name][0, 0] = np.inf

    _edit_tensors(root, edit)


def history_index_out_of_range(root: Path) -> None:
    def edit(t: dict[str, np.ndarray]) -> None:
        items = t["history.items"].astype(np.int64)  # saved narrow (int16 here): widen to hold the bad index
        items[0] = 1_000_000_000
        t["history.items"] = items

    _edit_tensors(root, edit)


def history_index_negative(root: Path) -> None:
    def edit(t: dict[str, np.ndarray]) -> None:
        items = t["history.items"].copy()
        items[-1] = -7
        t["history.items"] = items

    _edit_tensors(root, edit)


def history_offsets_broken(root: Path) -> None:
    def edit(t: dict[str, np.ndarray]) -> None:
        offsets = t["history.offsets"].copy()
        offsets[5] = offsets[-1] + 10
        t["history.offsets"] = offsets

    _edit_tensors(root, edit)


def mismatched_shapes(root: Path) -> None:
    """A weight matrix one row short of what the network declares."""

    def edit(t: dict[str, np.ndarray]) -> None:
        name = _first_float(t)
        t[name] = np.ascontiguousarray(t[name][:-1])

    _edit_tensors(root, edit)


def declared_size_huge(root: Path) -> None:
    """The manifest declares a billion items (the net would be built for them) against a 300-item vocabulary."""
    _edit_manifest(root, lambda m: m["config"]["dims"].__setitem__("n_items", 1_000_000_000))


CASES = (
    Case("byte-flip", byte_flip, "checksum mismatch", resigned=False),
    Case("truncation", truncate, "checksum mismatch", resigned=False),
    Case("wrong-checksum", wrong_checksum, "checksum mismatch", resigned=False),
    Case("missing-file", missing_file, "missing", resigned=False),
    Case("corrupt-manifest", corrupt_manifest, "corrupted manifest", resigned=False),
    Case("header-flip", header_flip, "unreadable tensor file", resigned=True),
    Case("header-length", header_length, "unreadable tensor file", resigned=True),
    Case("corrupt-vocab", corrupt_vocab, "corrupted JSON", resigned=True),
    Case("nan-weights", nan_weights, "non-finite", resigned=True),
    Case("inf-weights", inf_weights, "non-finite", resigned=True),
    Case("history-index-out-of-range", history_index_out_of_range, "outside [0, ", resigned=True),
    Case("history-index-negative", history_index_negative, "outside [0, ", resigned=True),
    Case("history-offsets-broken", history_offsets_broken, "row pointer", resigned=True),
    Case("mismatched-shapes", mismatched_shapes, "do not match the network", resigned=True),
    Case("declared-size-huge", declared_size_huge, "dims.n_items", resigned=True),
)


def make(case: Case, good: Path, dest: Path) -> Path:
    """A damaged copy of ``good`` at ``dest/<case name>``."""
    root = dest / case.name
    shutil.copytree(good, root)
    case.damage(root)
    if case.resigned:
        resign(root)
    return root
