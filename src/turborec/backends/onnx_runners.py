"""ONNX Runtime runners (CPU execution provider): fp32 and dynamically quantized int8.

Session options are set for latency on few cores: ``intra_op_num_threads = threads``, one
inter-op thread, sequential execution, every graph optimization (constant folding, Gemm /
activation fusion, int8 MatMul fusion).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from turborec._util.optional import require
from turborec.backends.base import Inputs, Runner, Tolerance
from turborec.backends.onnx_export import DEFAULT_OPSET, OUTPUT_NAME, export_onnx, quantize_int8
from turborec.backends.registry import register_runner


def session_options(threads: int) -> Any:
    """ORT session options for low-latency CPU inference with ``threads`` intra-op threads."""
    ort = require("onnxruntime", "onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the optimizer's notes are not the user's business
    return options


@register_runner("onnx-fp32")
class OnnxRunner(Runner):
    """The module exported to ONNX and run by ONNX Runtime in fp32. Options: ``opset``.
    Tolerance: rtol 1e-4 (fused kernels reorder float sums)."""

    tolerance = Tolerance(rtol=1e-4, atol=1e-5)

    def __init__(
        self,
        module: nn.Module,
        example_inputs: Inputs,
        *,
        threads: int = 1,
        max_batch: int | None = None,
        opset: int = DEFAULT_OPSET,
    ) -> None:
        super().__init__(module, example_inputs, threads=threads, max_batch=max_batch)
        ort = require("onnxruntime", "onnx")
        self.model_bytes = self._convert(export_onnx(self.module, self.example_inputs, opset=opset))
        self._session = ort.InferenceSession(
            self.model_bytes, session_options(threads), providers=["CPUExecutionProvider"]
        )

    def _convert(self, model_bytes: bytes) -> bytes:
        """Hook for subclasses that transform the exported graph (quantization)."""
        return model_bytes

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._session.run([OUTPUT_NAME], inputs)[0])

    def save_model(self, path: str | os.PathLike[str]) -> Path:
        """Write the ONNX graph this runner executes (self-contained, weights inline)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.model_bytes)
        return target


@register_runner("onnx-int8")
class OnnxInt8Runner(OnnxRunner):
    """ONNX Runtime with dynamic int8 quantization of every MatMul (``nn.Linear``): int8 weights,
    activations quantized per batch, VNNI/AMX int8 kernels where the CPU has them.
    Options: ``opset``, ``per_channel`` (per-column weight scales), ``quantize_embeddings``.
    Tolerance: 5% of the output's scale (``rtol=0.05`` against ``max|ref|``)."""

    tolerance = Tolerance(rtol=0.05, atol=1e-3)

    def __init__(
        self,
        module: nn.Module,
        example_inputs: Inputs,
        *,
        threads: int = 1,
        max_batch: int | None = None,
        opset: int = DEFAULT_OPSET,
        per_channel: bool = False,
        quantize_embeddings: bool = False,
    ) -> None:
        self.per_channel = per_channel
        self.quantize_embeddings = quantize_embeddings
        super().__init__(module, example_inputs, threads=threads, max_batch=max_batch, opset=opset)

    def _convert(self, model_bytes: bytes) -> bytes:
        return quantize_int8(model_bytes, per_channel=self.per_channel, quantize_embeddings=self.quantize_embeddings)


__all__ = ["OnnxInt8Runner", "OnnxRunner", "session_options"]
