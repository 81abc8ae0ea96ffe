"""PyTorch runners: eager (the reference) and ``torch.compile`` (Inductor, CPU C++/OpenMP kernels).

PyTorch's intra-op thread pool is process-wide; a runner sets it to its ``threads`` before
each call when it differs, so runners with different settings can share a process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from turborec.backends.base import Inputs, Runner, Tolerance, to_torch
from turborec.backends.registry import register_runner


def _use_threads(threads: int) -> None:
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@register_runner("torch-eager")
class EagerRunner(Runner):
    """The module as written, under ``torch.inference_mode``. Tolerance: exact (it is the reference)."""

    tolerance = Tolerance(rtol=0.0, atol=0.0)

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        _use_threads(self.threads)
        with torch.inference_mode():
            out = self.module(**to_torch(inputs))
        return out.float().numpy()


@register_runner("torch-compile")
class CompiledRunner(Runner):
    """``torch.compile`` with a dynamic batch axis: one compilation serves every batch size.

    The batch axis is marked dynamic; a batch of one is padded to two rows (and the extra output
    dropped) because PyTorch specialises sizes 0 and 1, which would cost a second compilation.
    The first call compiles (10-15 s cold on CPU; set ``TORCHINDUCTOR_CACHE_DIR`` to a persistent
    directory to reuse kernels across processes). Options: ``mode`` (``torch.compile`` mode).
    Tolerance: rtol 1e-4 (fused kernels reorder float sums).
    """

    tolerance = Tolerance(rtol=1e-4, atol=1e-5)

    def __init__(
        self,
        module: nn.Module,
        example_inputs: Inputs,
        *,
        threads: int = 1,
        max_batch: int | None = None,
        mode: str | None = None,
    ) -> None:
        super().__init__(module, example_inputs, threads=threads, max_batch=max_batch)
        self.mode = mode
        self._compiled: Any = torch.compile(self.module, mode=mode, dynamic=None)

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        _use_threads(self.threads)
        batch = next(iter(inputs.values())).shape[0]
        if batch == 1:
            inputs = {n: np.concatenate([a, a]) for n, a in inputs.items()}
        tensors = to_torch(inputs)
        for t in tensors.values():
            torch._dynamo.maybe_mark_dynamic(t, 0)
        with torch.inference_mode():
            out = self._compiled(**tensors)
        return out[:batch].float().numpy()


__all__ = ["CompiledRunner", "EagerRunner"]
