"""Where the GPU paths may run: CUDA present, Triton importable (both checked lazily)."""

from __future__ import annotations

import functools

import torch

from turborec._util.optional import has_module


@functools.cache
def triton_available() -> bool:
    """True when Triton can be imported and a CUDA device is visible (the Triton kernels' needs)."""
    return torch.cuda.is_available() and has_module("triton")


def use_triton_for(tensor: torch.Tensor, use_triton: bool | None) -> bool:
    """Resolve a ``use_triton`` argument: None picks Triton for CUDA tensors when it is installed."""
    if use_triton is None:
        return tensor.is_cuda and triton_available()
    if use_triton and not (tensor.is_cuda and triton_available()):
        from turborec.errors import ConfigError

        raise ConfigError("use_triton=True needs CUDA tensors and the 'triton' package; pass use_triton=None or False")
    return use_triton


def next_power_of_2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()
