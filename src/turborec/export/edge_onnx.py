"""Export the on-device modules to small ONNX graphs: named dynamic axes, int8 weights, a model version.

The graphs are exported with the TorchScript exporter (gathers stay ``Gather``, no ``Loop``), then
optionally dynamically quantized: every MatMul with a constant weight gets int8 weights (the MLP
layers); products between two run-time tensors (user vector x candidate table) stay fp32.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from turborec._util.optional import require
from turborec.backends.onnx_export import PositionalInputs, gemm_to_matmul
from turborec.errors import ConfigError
from turborec.models.compact_linear import with_float_linears

OPSET = 17
OUTPUT = "output"


def export_graph(
    module: nn.Module,
    inputs: Mapping[str, np.ndarray],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    opset: int = OPSET,
) -> bytes:
    """ONNX bytes of ``module(**inputs)`` with one output named ``"output"``.

    ``dynamic_axes`` names variable axes per input and for ``"output"`` (e.g. ``{"item_q": {0: "candidates"}}``).
    """
    require("onnx", "onnx")
    names = list(inputs)
    args = tuple(torch.from_numpy(np.array(inputs[n], copy=True)) for n in names)
    buffer = io.BytesIO()
    wrapper = PositionalInputs(with_float_linears(module), names).eval()  # a compressed net's int8 MLP as floats
    was_training = module.training
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation and traced-shape warnings of the exporter
        try:
            torch.onnx.export(
                wrapper,
                args,
                buffer,  # type: ignore[arg-type]
                input_names=names,
                output_names=[OUTPUT],
                dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        except (RuntimeError, torch.onnx.errors.OnnxExporterError) as exc:
            raise ConfigError(f"cannot export {type(module).__name__} to ONNX: {exc}") from exc
        finally:
            module.train(was_training)
    return buffer.getvalue()


def quantize_weights_int8(model_bytes: bytes, per_channel: bool = False) -> bytes:
    """Dynamic int8 quantization of the MatMuls whose second input is a constant weight."""
    onnx = require("onnx", "onnx")
    require("onnxruntime", "onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    plain = gemm_to_matmul(model_bytes)
    graph = onnx.load_from_string(plain).graph
    constants = {init.name for init in graph.initializer}
    weighted = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in constants]
    if not weighted:
        return plain
    quiet = _Quiet()
    logging.getLogger().addFilter(quiet)
    try:
        with tempfile.TemporaryDirectory(prefix="turborec-edge-int8-") as tmp:
            source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            source.write_bytes(plain)
            quantize_dynamic(
                source, target, weight_type=QuantType.QInt8, per_channel=per_channel,
                op_types_to_quantize=["MatMul"], nodes_to_quantize=weighted,
            )  # fmt: skip
            return target.read_bytes()
    finally:
        logging.getLogger().removeFilter(quiet)


class _Quiet(logging.Filter):
    """quantize_dynamic logs advice about a pre-processing step meant for static quantization of conv nets."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def model_version(*graphs: bytes) -> str:
    """A content address for the exported models: the first 16 hex digits of sha256 over the graphs."""
    h = hashlib.sha256()
    for g in graphs:
        h.update(hashlib.sha256(g).digest())
    return h.hexdigest()[:16]


def with_metadata(model_bytes: bytes, metadata: Mapping[str, str]) -> bytes:
    """The graph with ``metadata_props`` set (model version, producer), readable by any ONNX runtime."""
    onnx = require("onnx", "onnx")
    model = onnx.load_from_string(model_bytes)
    existing = {p.key: p for p in model.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = str(value)
        else:
            prop = model.metadata_props.add()
            prop.key, prop.value = key, str(value)
    model.producer_name = "turborec"
    return bytes(model.SerializeToString())


def check_plain_gathers(model_bytes: bytes, label: str) -> None:
    """Edge graphs must be straight-line: no Loop / Scan / If (slow or unsupported in small runtimes)."""
    onnx = require("onnx", "onnx")
    ops = {n.op_type for n in onnx.load_from_string(model_bytes).graph.node}
    bad = sorted(ops & {"Loop", "Scan", "If", "SequenceAt", "SplitToSequence"})
    if bad:
        raise ConfigError(f"{label}: exported graph contains control flow {bad}; edge graphs must be plain gathers")


__all__ = ["OPSET", "check_plain_gathers", "export_graph", "model_version", "quantize_weights_int8", "with_metadata"]
