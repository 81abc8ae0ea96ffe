"""The edge bundle: what the server sends to a device once per session, and its verified loading.

A bundle is a directory (written by ``turborec.export``) holding::

    manifest.json          artifact manifest: format_version, kind "edge-bundle", config (edge_format_version,
                           model_version, dims), info.sizes {file: bytes}, files {file: sha256}
    user_model.onnx        (history of recent items, server's user part) -> user vector; int8 MLP
    reranker.onnx          (user vector, server vector, recent clicks, candidate embeddings) -> scores
    session.json           model_version, user_id, candidate item_ids + titles/genres, history_ids
    session.safetensors    candidate embeddings (int8 row-wise), server vectors, per-candidate prior

The models change only with the model version; the session part changes with every request. Loading
checks the format versions, every file's size (a truncated file is named as such) and sha256, that the
session was built for the same model version as the models, and the tensors' shapes, before use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from turborec.edge import _safetensors
from turborec.errors import ArtifactError, UnknownIdError

BUNDLE_KIND = "edge-bundle"
ARTIFACT_FORMAT_VERSION = 1  # the manifest format of turborec artifacts (turborec._util.artifact)
EDGE_FORMAT_VERSION = 1  # the layout of the files below; the page (edge.js) checks the same number
MANIFEST = "manifest.json"
USER_MODEL = "user_model.onnx"
RERANKER = "reranker.onnx"
SESSION_JSON = "session.json"
SESSION_TENSORS = "session.safetensors"
BUNDLE_FILES = (USER_MODEL, RERANKER, SESSION_JSON, SESSION_TENSORS)

# name -> (dtype, shape in terms of C candidates, H history items, d embedding dim, v vector dim)
_TENSOR_SHAPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "item_q": ("uint8", ("C", "v")),
    "item_scale": ("float32", ("C",)),
    "item_bias": ("float32", ("C",)),
    "prior": ("float32", ("C",)),
    "input_q": ("uint8", ("C+H", "d")),
    "input_scale": ("float32", ("C+H",)),
    "input_bias": ("float32", ("C+H",)),
    "server_vec": ("float32", ("v",)),
    "user_part": ("float32", ("d",)),
}


@dataclass(frozen=True, eq=False)
class EdgeBundle:
    """A verified bundle in memory: the two ONNX models and one session's candidates.

    ``item_ids`` are the candidates' external ids (row i of the candidate tensors); ``history_ids``
    the user's pre-session recent items (rows C.. of the input table), oldest first.
    """

    model_version: str
    config: dict[str, Any]
    user_model: bytes
    reranker: bytes
    item_ids: tuple[Any, ...]
    history_ids: tuple[Any, ...]
    tensors: dict[str, np.ndarray]
    user_id: Any = None
    titles: tuple[str, ...] | None = None
    genres: tuple[str, ...] | None = None
    path: Path | None = None
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        index = {str(v): i for i, v in enumerate(self.item_ids)}
        if len(index) != len(self.item_ids):
            raise ArtifactError(f"{self._where}: candidate item ids are not unique")
        object.__setattr__(self, "_index", index)
        self._check_tensors()

    @property
    def _where(self) -> str:
        return str(self.path) if self.path is not None else "edge bundle"

    @property
    def n_candidates(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    @property
    def vec_dim(self) -> int:
        """Width of user and item vectors (the embedding dim, plus one where the model has item biases)."""
        return int(self.config["vec_dim"])

    @property
    def history_len(self) -> int:
        return int(self.config["history_len"])

    @property
    def recent_len(self) -> int:
        return int(self.config["recent_len"])

    def __contains__(self, item_id: object) -> bool:
        return str(item_id) in self._index

    def local_index(self, item_ids: Sequence[Any], unknown: str = "raise") -> np.ndarray:
        """Row of each candidate id (ids compare as strings: 42 and "42" are the same item).

        ``unknown="raise"`` raises :class:`UnknownIdError` for an id not among the candidates;
        ``"ignore"`` drops it (a click on something the device has no embedding for).
        """
        if unknown not in ("raise", "ignore"):
            raise ValueError(f"unknown must be 'raise' or 'ignore', got {unknown!r}")
        rows: list[int] = []
        for item in item_ids:
            row = self._index.get(str(item))
            if row is None:
                if unknown == "raise":
                    raise UnknownIdError(
                        f"item {item!r} is not in this edge bundle ({self.n_candidates} candidates); "
                        "clicks can only be on the session's candidates"
                    )
                continue
            rows.append(row)
        return np.asarray(rows, dtype=np.int64)

    def files(self) -> dict[str, bytes]:
        """The bundle's files except the manifest (the export writes them with a checksummed manifest)."""
        session = {
            "model_version": self.model_version,
            "user_id": self.user_id,
            "item_ids": list(self.item_ids),
            "titles": list(self.titles) if self.titles is not None else None,
            "genres": list(self.genres) if self.genres is not None else None,
            "history_ids": list(self.history_ids),
        }
        return {
            USER_MODEL: self.user_model,
            RERANKER: self.reranker,
            SESSION_JSON: json.dumps(session, separators=(",", ":")).encode("utf-8"),
            SESSION_TENSORS: _safetensors.dumps(self.tensors, {"model_version": self.model_version}),
        }

    def _check_tensors(self) -> None:
        sizes = {"C": self.n_candidates, "H": len(self.history_ids), "d": self.dim, "v": self.vec_dim}
        sizes["C+H"] = sizes["C"] + sizes["H"]
        for name, (dtype, dims) in _TENSOR_SHAPES.items():
            arr = self.tensors.get(name)
            if arr is None:
                raise ArtifactError(f"{self._where}: session tensors lack '{name}'")
            want = tuple(sizes[d] for d in dims)
            if arr.dtype != np.dtype(dtype) or arr.shape != want:
                raise ArtifactError(
                    f"{self._where}: session tensor '{name}' is {arr.dtype}{list(arr.shape)}, expected {dtype}{list(want)}"
                )


def load_bundle(path: str | Path, expect_model_version: str | None = None) -> EdgeBundle:
    """Read and verify a bundle directory; raise :class:`ArtifactError` naming what is wrong.

    ``expect_model_version``: the model version the caller runs (a bundle for another one is refused).
    """
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"{root}: no edge bundle directory here")
    manifest = _read_manifest(root)
    config = dict(manifest["config"])
    version = str(config.get("model_version", ""))
    if expect_model_version is not None and version != expect_model_version:
        raise ArtifactError(
            f"{root}: bundle is for model version {version!r}, but this runtime runs model version "
            f"{expect_model_version!r}; fetch a bundle exported from the same model"
        )
    blobs = {name: _read_verified(root, name, manifest) for name in BUNDLE_FILES}
    try:
        session = json.loads(blobs[SESSION_JSON].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{root / SESSION_JSON}: not valid JSON ({exc})") from exc
    if not isinstance(session, dict):
        raise ArtifactError(f"{root / SESSION_JSON}: not a session object")
    tensors, meta = _safetensors.loads(blobs[SESSION_TENSORS], str(root / SESSION_TENSORS))
    for label, got in (("session.json", session.get("model_version")), ("session.safetensors", meta.get("model_version"))):
        if got != version:
            raise ArtifactError(
                f"{root}: {label} was built for model version {got!r} but the bundle's models are version "
                f"{version!r} (files from two different exports)"
            )
    titles, genres = session.get("titles"), session.get("genres")
    try:
        return EdgeBundle(
            model_version=version,
            config=config,
            user_model=blobs[USER_MODEL],
            reranker=blobs[RERANKER],
            item_ids=tuple(session["item_ids"]),
            history_ids=tuple(session.get("history_ids") or ()),
            tensors=tensors,
            user_id=session.get("user_id"),
            titles=tuple(titles) if titles is not None else None,
            genres=tuple(genres) if genres is not None else None,
            path=root,
        )
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{root / SESSION_JSON}: missing or malformed field {exc}") from None


def _read_manifest(root: Path) -> dict[str, Any]:
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{root}: not an edge bundle (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{mpath}: corrupted manifest ({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise ArtifactError(f"{mpath}: not a turborec manifest")
    if manifest.get("format_version") != ARTIFACT_FORMAT_VERSION:
        raise ArtifactError(
            f"{mpath}: unknown artifact format version {manifest.get('format_version')!r} "
            f"(this runtime reads {ARTIFACT_FORMAT_VERSION})"
        )
    if manifest.get("kind") != BUNDLE_KIND:
        raise ArtifactError(f"{root}: artifact kind is {manifest.get('kind')!r}, not an edge bundle ({BUNDLE_KIND!r})")
    edge_version = manifest["config"].get("edge_format_version")
    if edge_version != EDGE_FORMAT_VERSION:
        raise ArtifactError(
            f"{mpath}: edge bundle format version {edge_version!r} is not supported "
            f"(this runtime reads {EDGE_FORMAT_VERSION}); update turborec or re-export the bundle"
        )
    for key in ("model_version", "dim", "vec_dim", "history_len", "recent_len"):
        if key not in manifest["config"]:
            raise ArtifactError(f"{mpath}: config lacks '{key}'")
    return manifest


def _read_verified(root: Path, name: str, manifest: Mapping[str, Any]) -> bytes:
    digest = dict(manifest.get("files", {})).get(name)
    if digest is None:
        raise ArtifactError(f"{root}: manifest lists no '{name}'")
    fp = root / name
    if not fp.is_file():
        raise ArtifactError(f"{root}: bundle file '{name}' is missing")
    blob = fp.read_bytes()
    size = dict(dict(manifest.get("info", {})).get("sizes", {})).get(name)
    if size is not None and len(blob) != int(size):
        state = "truncated" if len(blob) < int(size) else "longer than recorded"
        raise ArtifactError(f"{root}: bundle file '{name}' is {state} ({len(blob)} of {int(size)} bytes)")
    if hashlib.sha256(blob).hexdigest() != digest:
        raise ArtifactError(f"{root}: checksum mismatch for '{name}' (corrupted or modified)")
    return blob
