"""The :class:`Runner` interface: a model part made into batched numpy-in / numpy-out inference.

A model part is an ``nn.Module`` whose ``forward`` takes named tensors whose first axis is
the batch: a user tower ``(users [B], history [B, L]) -> [B, d]``, a ranker
``(dense [B, 13] float, sparse [B, 26] long) -> logits [B]``. ``example_inputs`` fixes the
input names, dtypes and every axis but the batch; a runner checks each call against them,
so a backend that compiled or exported for those shapes never sees anything else.

Each runner kind documents a :class:`Tolerance`: how far its outputs may be from eager
PyTorch on the same inputs (compiled and ONNX graphs reorder float sums; int8 rounds).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from turborec.errors import ConfigError, DataError

Inputs = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Tolerance:
    """Outputs ``y`` match eager ``ref`` when ``max|y - ref| <= atol + rtol * max|ref|`` (error measured
    against the output's scale, since int8 and reordered sums err in proportion to the layer's range)."""

    rtol: float
    atol: float

    def error(self, output: np.ndarray, reference: np.ndarray) -> float:
        """``max|y - ref|`` over the scale ``atol + rtol * max|ref|``: <= 1 means within tolerance."""
        diff = float(np.max(np.abs(np.asarray(output, np.float64) - reference), initial=0.0))
        bound = self.atol + self.rtol * float(np.max(np.abs(reference), initial=0.0))
        return diff / bound if bound > 0 else (0.0 if diff == 0 else float("inf"))

    def allows(self, output: np.ndarray, reference: np.ndarray) -> bool:
        return self.error(output, reference) <= 1.0


@dataclass(frozen=True)
class _InputSpec:
    dtype: np.dtype[Any]
    tail: tuple[int, ...]  # every axis after the batch


def _check_example(example_inputs: Inputs) -> dict[str, np.ndarray]:
    if not isinstance(example_inputs, Mapping) or not example_inputs:
        raise ConfigError("example_inputs must be a non-empty mapping of input name -> numpy array")
    arrays: dict[str, np.ndarray] = {}
    for name, value in example_inputs.items():
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if arr.ndim < 1 or arr.shape[0] < 1:
            raise ConfigError(f"example input '{name}' needs a batch axis with at least one row, got shape {arr.shape}")
        if arr.dtype.kind not in "fiub":
            raise ConfigError(f"example input '{name}' has unsupported dtype {arr.dtype}")
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        arrays[str(name)] = np.ascontiguousarray(arr)
    batches = {a.shape[0] for a in arrays.values()}
    if len(batches) != 1:
        raise ConfigError(f"example inputs disagree on the batch size: {sorted(batches)}")
    return arrays


class Runner(ABC):
    """Batched inference of one model part. Call with ``{name: array [B, ...]}``; get ``float32 [B, ...]``.

    Subclasses set ``kind`` and ``tolerance`` and implement :meth:`_run`. ``threads`` is the
    intra-op thread count; ``max_batch`` splits larger calls into chunks (bounded memory).
    The module is put in eval mode.
    """

    kind: ClassVar[str] = ""
    tolerance: ClassVar[Tolerance] = Tolerance(0.0, 0.0)

    def __init__(
        self, module: nn.Module, example_inputs: Inputs, *, threads: int = 1, max_batch: int | None = None
    ) -> None:
        if not isinstance(module, nn.Module):
            raise ConfigError(f"runner '{self.kind}' needs an nn.Module, got {type(module).__name__}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"runner '{self.kind}': threads must be a positive integer, got {threads!r}")
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
            raise ConfigError(f"runner '{self.kind}': max_batch must be a positive integer or None, got {max_batch!r}")
        self.module = module.eval()
        self.example_inputs = _check_example(example_inputs)
        self.input_names = tuple(self.example_inputs)
        self._specs = {n: _InputSpec(a.dtype, a.shape[1:]) for n, a in self.example_inputs.items()}
        self.threads = threads
        self.max_batch = max_batch
        with torch.inference_mode():
            probe = module(**{n: torch.from_numpy(a.copy()) for n, a in self.example_inputs.items()})
        if not isinstance(probe, torch.Tensor):
            raise ConfigError(f"runner '{self.kind}': the module must return one tensor, got {type(probe).__name__}")
        self.output_tail: tuple[int, ...] = tuple(probe.shape[1:])

    @property
    def name(self) -> str:
        return self.kind

    @abstractmethod
    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Outputs for one checked batch (contiguous arrays of the example dtypes, batch >= 1)."""

    def __call__(self, inputs: Inputs) -> np.ndarray:
        arrays = self._check_inputs(inputs)
        batch = next(iter(arrays.values())).shape[0]
        if batch == 0:
            return np.empty((0, *self.output_tail), dtype=np.float32)
        step = self.max_batch or batch
        parts = [
            np.asarray(self._run({n: a[i : i + step] for n, a in arrays.items()}), dtype=np.float32)
            for i in range(0, batch, step)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def warmup(self, batch_sizes: Iterable[int] = (1, 8), repeats: int = 2) -> None:
        """Run a few batches built from the example rows (first-call allocation, compilation, caches)."""
        for size in batch_sizes:
            inputs = tile_inputs(self.example_inputs, size)
            for _ in range(repeats):
                self(inputs)

    def _check_inputs(self, inputs: Inputs) -> dict[str, np.ndarray]:
        if not isinstance(inputs, Mapping):
            raise DataError(f"runner '{self.name}' takes a mapping of input name -> array, got {type(inputs).__name__}")
        missing = [n for n in self.input_names if n not in inputs]
        unknown = [n for n in inputs if n not in self._specs]
        if missing or unknown:
            raise DataError(
                f"runner '{self.name}' expects inputs {list(self.input_names)}; missing {missing}, unknown {unknown}",
                source="inputs",
            )
        out: dict[str, np.ndarray] = {}
        for name in self.input_names:
            spec, arr = self._specs[name], np.asarray(inputs[name])
            if arr.ndim != len(spec.tail) + 1 or arr.shape[1:] != spec.tail:
                raise DataError(
                    f"input '{name}' has shape {arr.shape}, expected (batch, {', '.join(map(str, spec.tail))})".replace(
                        ", )", ")"
                    ),
                    source="inputs",
                )
            if spec.dtype.kind in "iub" and arr.dtype.kind not in "iub":
                raise DataError(f"input '{name}' must hold integers, got dtype {arr.dtype}", source="inputs")
            out[name] = np.ascontiguousarray(arr, dtype=spec.dtype)
        batches = {a.shape[0] for a in out.values()}
        if len(batches) != 1:
            raise DataError(f"inputs disagree on the batch size: {sorted(batches)}", source="inputs")
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind='{self.kind}', inputs={list(self.input_names)}, threads={self.threads})"


def tile_inputs(example: Inputs, batch: int) -> dict[str, np.ndarray]:
    """A batch of ``batch`` rows made by cycling through the example rows."""
    rows = np.arange(batch) % next(iter(example.values())).shape[0]
    return {n: np.ascontiguousarray(np.asarray(a)[rows]) for n, a in example.items()}


def to_torch(inputs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Tensors sharing memory with the arrays where possible (copies read-only arrays, which torch rejects)."""
    return {n: torch.from_numpy(a if a.flags.writeable else a.copy()) for n, a in inputs.items()}


__all__ = ["Inputs", "Runner", "Tolerance", "tile_inputs", "to_torch"]
