"""An ``nn.Linear`` with int8 weights and dynamically quantized activations, saveable as plain tensors.

Weights are quantized symmetrically per output channel: ``w = qweight * scale[:, None]`` with
``qweight`` int8 in [-127, 127] and ``scale = max|w_row| / 127``. Activations are quantized per
batch inside the kernel (PyTorch's fbgemm / x86 ``quantized::linear_dynamic``), so the layer is
a drop-in replacement at inference.

Its state dict is ``qweight`` int8 [out, in], ``scale`` fp32 [out] and ``bias`` fp32 [out] (when
the layer has one): ordinary tensors that safetensors stores and a strict load checks, so a
network holding these layers saves and loads like any other (no float copy is kept anywhere).
At runtime the weights live only in the kernel's packed form; where no quantized CPU engine is
available the layer keeps the int8 tensors and multiplies with dequantized weights instead.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from turborec.errors import ConfigError

QMAX = 127  # symmetric int8 range [-127, 127]: no -128, so negation never overflows


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float [out, in] -> (int8 [out, in], fp32 scale [out]) with per-row symmetric scaling."""
    w = weight.detach().to(torch.float32)
    scale = (w.abs().amax(dim=1) / QMAX).clamp_min(1e-12)
    q = torch.round(w / scale.unsqueeze(1)).clamp_(-QMAX, QMAX).to(torch.int8)
    return q, scale


def _pack(q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> Any | None:
    """The kernel's packed weights, or None where the quantized CPU ops are unavailable."""
    try:
        with warnings.catch_warnings():  # quantized-tensor constructors warn about their future on every call
            warnings.simplefilter("ignore")
            zero = torch.zeros(q.shape[0], dtype=torch.long)
            qw = torch._make_per_channel_quantized_tensor(q, scale.to(torch.float64), zero, 0)
            return torch.ops.quantized.linear_prepack(qw, bias)
    except (RuntimeError, AttributeError, NotImplementedError):
        return None


class Int8DynamicLinear(nn.Module):
    """``y = x W^T + b`` with int8 per-channel weights and per-batch int8 activations (CPU)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.has_bias = bool(bias)
        q = torch.zeros(out_features, in_features, dtype=torch.int8)
        self._set(q, torch.ones(out_features), torch.zeros(out_features) if bias else None)

    @classmethod
    def from_float(cls, linear: nn.Linear) -> Int8DynamicLinear:
        out = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        q, scale = quantize_weight(linear.weight)
        bias = None if linear.bias is None else linear.bias.detach().to(torch.float32).cpu().clone()
        out._set(q.cpu(), scale.cpu(), bias)
        return out

    def _set(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        packed = _pack(q, scale, bias)
        self._packed = packed
        # without a kernel, keep the int8 tensors themselves (still 1 byte per weight)
        self._plain = None if packed is not None else (q, scale, bias)

    def int8_state(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(qweight int8 [out, in], scale fp32 [out], bias fp32 [out] or None)."""
        if self._packed is None:
            assert self._plain is not None
            return self._plain
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qw, bias = torch.ops.quantized.linear_unpack(self._packed)
            q = qw.int_repr().clone()
            scale = qw.q_per_channel_scales().to(torch.float32)
        return q, scale, None if bias is None else bias.detach().to(torch.float32).clone()

    def dequantized_weight(self) -> torch.Tensor:
        q, scale, _ = self.int8_state()
        return q.to(torch.float32) * scale.unsqueeze(1)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized fp32 weight [out, in] (a new tensor each call): for code that reads a layer's
        weights as vectors -- a Mult-DAE's decoder rows are its item vectors -- so the int8 copy answers it."""
        return self.dequantized_weight()

    @property
    def bias(self) -> torch.Tensor | None:
        return self.int8_state()[2]

    def nbytes(self) -> int:
        """Bytes of the weights this layer holds: 1 per weight plus fp32 scales and bias."""
        return self.out_features * (self.in_features + 4 + (4 if self.has_bias else 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise ConfigError("int8 dynamic linear layers run on the CPU only; serve this model with device='cpu'")
        if self._packed is not None:
            shape = x.shape
            y = torch.ops.quantized.linear_dynamic(x.reshape(-1, shape[-1]).float(), self._packed, True)
            return y.reshape(*shape[:-1], self.out_features)
        q, scale, bias = self.int8_state()
        return F.linear(x.float(), q.to(torch.float32) * scale.unsqueeze(1), bias)

    # ------------------------------------------------------------ state as plain tensors
    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        q, scale, bias = self.int8_state()
        destination[prefix + "qweight"] = q
        destination[prefix + "scale"] = scale
        if bias is not None:
            destination[prefix + "bias"] = bias

    def _load_from_state_dict(
        self,
        state_dict: Any,
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        wanted = {"qweight": (torch.int8, (self.out_features, self.in_features)),
                  "scale": (torch.float32, (self.out_features,))}  # fmt: skip
        if self.has_bias:
            wanted["bias"] = (torch.float32, (self.out_features,))
        found: dict[str, torch.Tensor] = {}
        for name, (dtype, shape) in wanted.items():
            key = prefix + name
            if key not in state_dict:
                missing_keys.append(key)
                continue
            value = state_dict[key]
            if value.dtype != dtype or tuple(value.shape) != shape:
                error_msgs.append(
                    f"{key}: expected {dtype} {list(shape)}, got {value.dtype} {list(value.shape)}"
                )
                continue
            found[name] = value.detach().cpu().clone()
        if strict:
            own = {prefix + n for n in ("qweight", "scale", "bias")}
            unexpected_keys.extend(k for k in state_dict if k.startswith(prefix) and "." not in k[len(prefix):]
                                   and k not in own)  # fmt: skip
        if len(found) == len(wanted):
            self._set(found["qweight"], found["scale"], found.get("bias"))

    # deepcopy / pickle-free copies: carry the int8 tensors, re-pack on the other side
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_plain"] = self.int8_state()
        state["_packed"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._set(*state["_plain"])

    def extra_repr(self) -> str:
        engine = "fbgemm-dynamic" if self._packed is not None else "dequantize"
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.has_bias}, {engine}"


def with_float_linears(module: nn.Module) -> nn.Module:
    """``module`` with every :class:`Int8DynamicLinear` replaced by an ``nn.Linear`` of its dequantized weights,
    sharing everything else (``module`` itself when it has none). For graph exporters (ONNX), which cannot
    trace fbgemm's packed weights; they quantize the float graph again on their side."""
    if isinstance(module, Int8DynamicLinear):
        linear = nn.Linear(module.in_features, module.out_features, bias=module.has_bias)
        _, _, bias = module.int8_state()
        with torch.no_grad():
            linear.weight.copy_(module.dequantized_weight())
            if bias is not None:
                linear.bias.copy_(bias)
        return linear.train(module.training)
    children = {name: with_float_linears(child) for name, child in module.named_children()}
    if all(children[name] is child for name, child in module.named_children()):
        return module
    out = copy.copy(module)  # a shallow copy: parameters and buffers are shared, only the children differ
    out._modules = dict(module._modules)
    out._modules.update(children)
    return out

__all__ = ["QMAX", "Int8DynamicLinear", "quantize_weight", "with_float_linears"]
