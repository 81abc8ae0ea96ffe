"""ONNX export of a model part with a dynamic batch axis, and int8 dynamic quantization of the graph.

Export uses the TorchScript exporter (``dynamo=False``): it exports the gather-based modules
here cleanly in well under a second, where the dynamo exporter takes 5-10 s and emits
``GatherND``. Weights are written inline (one self-contained model), which suits model
parts under ONNX's 2 GB protobuf limit.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from turborec._util.optional import require
from turborec.errors import ConfigError
from turborec.models.compact_linear import with_float_linears

OUTPUT_NAME = "output"
DEFAULT_OPSET = 17


class PositionalInputs(nn.Module):
    """Calls the wrapped module with keyword inputs from positional ones (the exporter passes positions)."""

    def __init__(self, module: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.inner = module
        self.names = tuple(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.inner(**dict(zip(self.names, tensors)))


def export_onnx(module: nn.Module, example_inputs: Mapping[str, np.ndarray], opset: int = DEFAULT_OPSET) -> bytes:
    """Serialized ONNX model (bytes) with inputs named as ``example_inputs``, batch axis dynamic,
    one output named ``"output"``."""
    require("onnx", "onnx")
    names = list(example_inputs)
    args = tuple(torch.from_numpy(np.array(example_inputs[n], copy=True)) for n in names)
    dynamic_axes = {n: {0: "batch"} for n in [*names, OUTPUT_NAME]}
    buffer = io.BytesIO()
    was_training = module.training
    # the exporter restores the *wrapper's* train/eval mode afterwards, recursively: a fresh wrapper is
    # in training mode and would switch dropout in the caller's module back on
    wrapper = PositionalInputs(with_float_linears(module), names).eval()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter warns about its own deprecation and about traced shapes
        try:
            torch.onnx.export(
                wrapper,
                args,
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        except (RuntimeError, torch.onnx.errors.OnnxExporterError) as exc:
            raise ConfigError(f"cannot export {type(module).__name__} to ONNX: {exc}") from exc
        finally:
            module.train(was_training)
    return buffer.getvalue()


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def gemm_to_matmul(model_bytes: bytes) -> bytes:
    """Rewrite ``Gemm(A, W, b)`` with a constant ``W`` as ``MatMul(A, W') + b``.

    ORT's dynamic quantization handles MatMul but not Gemm, and the exporter writes every
    ``nn.Linear`` on a 2-D input as Gemm; without this rewrite nothing would be quantized.
    """
    onnx = require("onnx", "onnx")
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes = []
    for node in graph.node:
        plain = (
            node.op_type == "Gemm"
            and node.input[1] in initializers
            and _attribute(node, "transA", 0) == 0
            and _attribute(node, "alpha", 1.0) == 1.0
            and _attribute(node, "beta", 1.0) == 1.0
        )
        if not plain:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if _attribute(node, "transB", 0):
            weight = weight.T
        weight_name = f"{node.input[1]}__matmul"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), weight_name))
        if len(node.input) > 2 and node.input[2]:
            product = f"{node.output[0]}__product"
            nodes.append(
                helper.make_node("MatMul", [node.input[0], weight_name], [product], name=f"{node.name}_matmul")
            )
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_bias"))
        else:
            nodes.append(
                helper.make_node("MatMul", [node.input[0], weight_name], [node.output[0]], name=f"{node.name}_matmul")
            )
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return bytes(model.SerializeToString())


def quantize_int8(model_bytes: bytes, *, per_channel: bool = False, quantize_embeddings: bool = False) -> bytes:
    """Dynamic int8 quantization (``onnxruntime.quantization.quantize_dynamic``): int8 weights,
    activations quantized per batch at run time. Embedding gathers stay fp32 unless
    ``quantize_embeddings`` (smaller tables, more error)."""
    require("onnxruntime", "onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    op_types = ["MatMul", *(["Gather"] if quantize_embeddings else [])]
    root = logging.getLogger()
    advice = _DropPreprocessAdvice()
    root.addFilter(advice)
    try:
        with tempfile.TemporaryDirectory(prefix="turborec-int8-") as tmp:
            source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            source.write_bytes(gemm_to_matmul(model_bytes))
            quantize_dynamic(
                source, target, weight_type=QuantType.QInt8, per_channel=per_channel, op_types_to_quantize=op_types
            )
            return target.read_bytes()
    finally:
        root.removeFilter(advice)


class _DropPreprocessAdvice(logging.Filter):
    """quantize_dynamic logs, on the root logger, advice to run a pre-processing step meant for
    static (calibrated) quantization of conv nets; it does not apply to these graphs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


__all__ = ["DEFAULT_OPSET", "OUTPUT_NAME", "PositionalInputs", "export_onnx", "gemm_to_matmul", "quantize_int8"]
