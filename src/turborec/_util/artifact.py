"""The artifact directory: manifest.json + safetensors + JSON side files, written atomically.

An artifact is the unit that train, compress, tune, serve and export exchange.
Layout::

    manifest.json          format_version, kind, config, metrics, files (sha256 each), created_by
    weights.safetensors    tensors (numpy or torch), never pickled
    vocab/*.json, ...      any JSON side file
    <anything>             extra files written by a callback (an index, ONNX graphs)

Writing goes to a hidden temporary sibling, every file is fsynced and hashed, then
the directory is renamed into place, so a reader sees either the old artifact or
the complete new one. Loading checks the format version and every hash before
anything is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turborec.errors import ArtifactError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
TUNED_MODEL_DIR = "model"  # where `turborec tune --out DIR` saves the chosen model (beside its report)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _uniform_modes(root: Path) -> None:
    """Every file 0644 and folder 0755: temp files and folders are created 0600/0700, writers differ."""
    os.chmod(root, 0o755)
    for p in root.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)


def _save_tensors(path: Path, tensors: Mapping[str, Any]) -> None:
    import numpy as np

    if all(isinstance(v, np.ndarray) for v in tensors.values()):
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    else:  # torch tensors (bf16 has no numpy dtype); torch is only imported when given torch
        import torch
        from safetensors.torch import save_file as save_torch

        conv = {
            k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v)
            .detach()
            .cpu()
            .contiguous()
            for k, v in tensors.items()
        }
        save_torch(conv, str(path))


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, default=_json_default, indent=1, sort_keys=False)


def save_artifact(
    path: str | os.PathLike[str],
    *,
    kind: str,
    config: Mapping[str, Any],
    tensors: Mapping[str, Any] | None = None,
    json_files: Mapping[str, Any] | None = None,
    extra: Callable[[Path], None] | None = None,
    metrics: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write an artifact directory atomically and return its path.

    ``tensors`` go to ``weights.safetensors``; ``json_files`` maps relative paths
    to JSON-serialisable objects; ``extra(tmpdir)`` may write any further files.
    An existing directory at ``path`` is replaced only once the new one is complete.
    """
    from turborec._version import __version__

    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        if tensors:
            _save_tensors(tmp / WEIGHTS, tensors)
        for rel, obj in (json_files or {}).items():
            write_json(tmp / rel, obj)
        if extra is not None:
            extra(tmp)
        files = {
            p.relative_to(tmp).as_posix(): sha256_file(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "created_by": f"turborec {__version__}",
            "config": dict(config),
            "metrics": dict(metrics or {}),
            "info": dict(info or {}),
            "files": files,
        }
        write_json(tmp / MANIFEST, manifest)
        _uniform_modes(tmp)
        _fsync_tree(tmp)
        old: Path | None = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            if old.exists():
                shutil.rmtree(old)
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


@dataclass
class Artifact:
    """A verified artifact directory. Construct with :func:`load_artifact`."""

    path: Path
    manifest: dict[str, Any]
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.manifest.get("config", {}))

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.manifest.get("metrics", {}))

    @property
    def info(self) -> dict[str, Any]:
        return dict(self.manifest.get("info", {}))

    @property
    def files(self) -> dict[str, str]:
        return dict(self.manifest.get("files", {}))

    def file(self, rel: str) -> Path:
        if rel not in self.files:
            raise ArtifactError(f"{self.path}: artifact has no file '{rel}'")
        return self.path / rel

    def has(self, rel: str) -> bool:
        return rel in self.files

    def json(self, rel: str) -> Any:
        path = self.file(rel)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{path}: corrupted JSON ({exc})") from exc

    def numpy_tensors(self, rel: str = WEIGHTS) -> dict[str, Any]:
        """The tensors of ``rel`` as numpy arrays; refuses an unreadable file and non-finite values."""
        from safetensors.numpy import load_file

        path = self.file(rel)
        tensors = _read_tensors(path, load_file)
        check_finite(tensors, path)
        return tensors

    def torch_tensors(self, rel: str = WEIGHTS) -> dict[str, Any]:
        """The tensors of ``rel`` as torch tensors; refuses an unreadable file and non-finite values."""
        from safetensors.torch import load_file as load_torch

        path = self.file(rel)
        tensors = _read_tensors(path, load_torch)
        check_finite(tensors, path)
        return tensors


def _read_tensors(path: Path, load: Callable[[str], Mapping[str, Any]]) -> dict[str, Any]:
    """Parse a safetensors file, turning the parser's own errors (a damaged header, offsets past the end of
    the file, an unknown dtype: ``SafetensorError``, ``ValueError``...) into one :class:`ArtifactError`."""
    try:
        return dict(load(str(path)))
    except MemoryError as exc:
        raise ArtifactError(f"{path}: tensor file declares more data than fits in memory") from exc
    except Exception as exc:  # the parser's exception types differ per version and backend
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArtifactError(f"{path}: unreadable tensor file ({first})") from exc


def check_finite(tensors: Mapping[str, Any], source: Path | str) -> None:
    """Refuse floating-point tensors holding NaN or infinity (numpy arrays or torch tensors).

    A non-finite weight passes every checksum (the file is intact: the values are wrong) and turns into
    NaN scores, which rank below everything and silently shorten or empty the answers; refused here, every
    consumer of an artifact gets a clear error naming the tensor instead.
    """
    import numpy as np

    for name, value in tensors.items():
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "fc" and value.size and not np.isfinite(value).all():
                bad = int(value.size - np.count_nonzero(np.isfinite(value)))
                raise ArtifactError(f"{source}: tensor '{name}' holds {bad} non-finite value(s) (NaN or inf)")
            continue
        is_floating = getattr(value, "is_floating_point", None)
        if is_floating is None or not is_floating() or value.numel() == 0:
            continue
        import torch

        finite = torch.isfinite(value)
        if not bool(finite.all()):
            bad = int(value.numel() - int(finite.sum()))
            raise ArtifactError(f"{source}: tensor '{name}' holds {bad} non-finite value(s) (NaN or inf)")


def artifact_root(path: str | os.PathLike[str]) -> Path:
    """The artifact directory ``path`` names: itself, or the model inside a ``turborec tune --out`` folder
    (which holds the report beside ``model/``), so every command takes the folder the user was given."""
    root = Path(path)
    if not (root / MANIFEST).is_file() and (root / TUNED_MODEL_DIR / MANIFEST).is_file():
        return root / TUNED_MODEL_DIR
    return root


def load_artifact(path: str | os.PathLike[str], kinds: Iterable[str] | None = None) -> Artifact:
    """Open and verify an artifact (or a tune folder's model, :func:`artifact_root`): format version, kind,
    and every file's sha256."""
    root = artifact_root(path)
    if not root.is_dir():
        raise ArtifactError(f"{root}: no artifact directory here")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{root}: not an artifact (no {MANIFEST})")
    try:
        with open(mpath, encoding="utf-8") as f:
            manifest = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{mpath}: corrupted manifest ({exc})") from exc
    if not isinstance(manifest, dict) or "format_version" not in manifest or "files" not in manifest:
        raise ArtifactError(f"{mpath}: not a turborec manifest")
    version = manifest["format_version"]
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{mpath}: unknown artifact format version {version!r} (this turborec reads {FORMAT_VERSION})"
        )
    if kinds is not None:
        allowed = tuple(kinds)
        if manifest.get("kind") not in allowed:
            raise ArtifactError(
                f"{root}: artifact kind is {manifest.get('kind')!r}, expected one of {', '.join(allowed)}"
            )
    for rel, digest in manifest["files"].items():
        fp = root / rel
        if not fp.is_file():
            raise ArtifactError(f"{root}: artifact file '{rel}' is missing")
        if sha256_file(fp) != digest:
            raise ArtifactError(f"{root}: checksum mismatch for '{rel}' (corrupted or truncated)")
    return Artifact(path=root, manifest=manifest)
