"""The safetensors file format read and written with numpy alone (the edge runtime may not need torch
or the ``safetensors`` package).

Layout: 8 bytes little-endian header length N, N bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [start, end]}, "__metadata__": {...}}``, then the data,
offsets relative to the end of the header. The browser page parses the same bytes (``edge.js``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from turborec.errors import ArtifactError

_DTYPES: dict[str, np.dtype[Any]] = {
    "U8": np.dtype("<u1"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "F32": np.dtype("<f4"),
}
_NAMES = {dt: name for name, dt in _DTYPES.items()}


def dumps(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialize numpy arrays (uint8, int32, int64, float32) as safetensors bytes, in name order."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if dtype not in _NAMES:
            raise ValueError(f"tensor '{name}': dtype {arr.dtype} is not one of uint8, int32, int64, float32")
        data = arr.astype(dtype, copy=False).tobytes()
        header[name] = {"dtype": _NAMES[dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # keep the data section 8-byte aligned, as the reference writer does
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def loads(blob: bytes, source: str = "safetensors") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse safetensors bytes into (tensors, metadata); a malformed file raises ArtifactError naming ``source``."""
    if len(blob) < 8:
        raise ArtifactError(f"{source}: too short to be a safetensors file ({len(blob)} bytes)")
    (size,) = struct.unpack("<Q", blob[:8])
    if size > len(blob) - 8:
        raise ArtifactError(f"{source}: header claims {size} bytes but the file has {len(blob) - 8} after it")
    try:
        header = json.loads(blob[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{source}: corrupted safetensors header ({exc})") from exc
    if not isinstance(header, dict):
        raise ArtifactError(f"{source}: safetensors header is not a JSON object")
    data = memoryview(blob)[8 + size :]
    metadata = {str(k): str(v) for k, v in dict(header.pop("__metadata__", None) or {}).items()}
    out: dict[str, np.ndarray] = {}
    for name, spec in header.items():
        try:
            dtype = _DTYPES[spec["dtype"]]
            shape = tuple(int(s) for s in spec["shape"])
            start, end = (int(v) for v in spec["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{source}: tensor '{name}' has an unreadable header entry ({exc})") from None
        count = int(np.prod(shape)) if shape else 1
        if not 0 <= start <= end <= len(data) or end - start != count * dtype.itemsize:
            raise ArtifactError(f"{source}: tensor '{name}' does not fit the file (truncated or corrupted)")
        out[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(shape).copy()
    return out, metadata
