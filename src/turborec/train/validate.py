"""Content checks for loaded artifacts: every index array against the sizes the artifact declares.

A checksum says a file is the one that was written, not that what was written makes sense: an
artifact with recomputed checksums (or written by a buggy tool) may declare 300 items and hold
a history index of 1e9, which ``np.bincount`` would turn into a 22 GB allocation, or a network
built for a billion rows. These checks run on load, before anything is allocated from the
values, and raise :class:`~turborec.errors.ArtifactError` naming the file and the array.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from turborec.errors import ArtifactError


def check_declared_dims(source: Path | str, dims: Any, sizes: Mapping[str, int]) -> dict[str, int]:
    """``dims`` (the manifest's ``config.dims``) as ints, each equal to the size the artifact's own files give
    in ``sizes`` (e.g. the vocabularies' lengths): the network is built from ``dims``, so a wrong one would
    allocate tables of any size or index past them."""
    if not isinstance(dims, Mapping):
        raise ArtifactError(f"{source}: manifest config.dims is not a mapping")
    out: dict[str, int] = {}
    for key, value in dims.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ArtifactError(f"{source}: manifest config.dims.{key}={value!r} is not a size")
        out[str(key)] = value
    for key, size in sizes.items():
        if out.get(key) != size:
            raise ArtifactError(f"{source}: manifest config.dims.{key}={out.get(key)!r} but the artifact holds {size}")
    return out


def check_declared_sizes(source: Path | str, name: str, sizes: Any, stored_elements: int) -> None:
    """Table sizes (e.g. a ranker's ``cardinalities``) a network will be built with, bounded by what the weights
    hold: a table of n rows stores at least n values, so a larger n is a damaged manifest, refused before the
    network (and its n-row tables) is allocated."""
    if not isinstance(sizes, (list, tuple)):
        raise ArtifactError(f"{source}: '{name}' is not a list of sizes")
    for value in sizes:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > stored_elements:
            raise ArtifactError(
                f"{source}: '{name}' declares a table of {value!r} rows; the weights hold {stored_elements} values"
            )


def check_index_array(source: Path | str, name: str, values: np.ndarray, bound: int) -> None:
    """Every entry of the integer array ``values`` in ``[0, bound)``."""
    if values.dtype.kind not in "iu":
        raise ArtifactError(f"{source}: '{name}' has dtype {values.dtype}, expected integers")
    if values.size and (int(values.min()) < 0 or int(values.max()) >= bound):
        raise ArtifactError(
            f"{source}: '{name}' holds indices in [{int(values.min())}, {int(values.max())}], outside [0, {bound})"
        )


def check_offsets(source: Path | str, name: str, offsets: np.ndarray, n_rows: int, n_values: int) -> None:
    """A CSR row pointer: ``n_rows + 1`` entries from 0 up to ``n_values``, never decreasing."""
    if offsets.dtype.kind not in "iu" or offsets.ndim != 1:
        raise ArtifactError(f"{source}: '{name}' must be a 1-d integer array")
    if len(offsets) != n_rows + 1:
        raise ArtifactError(f"{source}: '{name}' has {len(offsets)} entries, expected {n_rows + 1} (rows + 1)")
    if int(offsets[0]) != 0 or int(offsets[-1]) != n_values or np.any(np.diff(offsets) < 0):
        raise ArtifactError(f"{source}: '{name}' is not a row pointer from 0 to {n_values} that never decreases")


def check_length(source: Path | str, name: str, values: np.ndarray, length: int) -> None:
    if values.ndim != 1 or len(values) != length:
        raise ArtifactError(f"{source}: '{name}' has shape {tuple(values.shape)}, expected ({length},)")


def check_histories(source: Path | str, offsets: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> None:
    """A retrieval artifact's training histories (``history.offsets`` / ``history.items``)."""
    if items.ndim != 1:
        raise ArtifactError(f"{source}: 'history.items' must be 1-d, has shape {tuple(items.shape)}")
    check_offsets(source, "history.offsets", offsets, n_users, len(items))
    check_index_array(source, "history.items", items, n_items)


def check_csr(source: Path | str, prefix: str, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
              shape: tuple[int, int]) -> None:
    """A saved square-or-not sparse matrix ``prefix.indptr / .indices / .data`` against its declared shape."""
    if indices.ndim != 1 or data.shape != indices.shape:
        raise ArtifactError(f"{source}: '{prefix}.indices' and '{prefix}.data' must be 1-d of one length")
    check_offsets(source, f"{prefix}.indptr", indptr, shape[0], len(indices))
    check_index_array(source, f"{prefix}.indices", indices, shape[1])


def check_state_shapes(source: Path | str, expected: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Each stored weight has the shape the network (built from the declared sizes) expects."""
    for name, tensor in given.items():
        want = expected.get(name)
        if want is not None and tuple(want.shape) != tuple(tensor.shape):
            raise ArtifactError(f"{source}: tensor '{name}' has shape {tuple(tensor.shape)}, the network built from "
                                f"the manifest expects {tuple(want.shape)} (weights do not match the network)")
