"""The GPU ranker Runner (kind ``gpu-dlrm``): numpy feature rows in, numpy logits out.

``make_runner("gpu-dlrm", dlrm, {"dense": float32 [B, n_dense], "sparse": int64 [B, F]})`` runs a
``models.rankers.DLRM`` through :class:`~turborec.backends.gpu.ranker.FusedDLRM` (bf16, one
gather+interaction kernel, fused Linear+ReLU) and, on CUDA, replays a CUDA graph per batch bucket
(``graphs.GraphedRanker``). Indices are checked on the host first: an index outside its table would
otherwise be an illegal memory access on the device, not an error message. Without CUDA it runs
the same fused module on the CPU (what CI tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from turborec.backends.base import Inputs, Runner, Tolerance
from turborec.backends.gpu.graphs import DEFAULT_BUCKETS, GraphedRanker
from turborec.backends.gpu.ranker import FusedDLRM
from turborec.backends.registry import register_runner
from turborec.errors import ConfigError, DataError
from turborec.models.rankers.dlrm import DLRM


class _OnDevice(nn.Module):
    """Feeds the wrapped module on its device and returns CPU outputs (the Runner base probes with CPU arrays)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner = module

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        weight = next(self.inner.parameters())  # feed the module in its own device and dtype (a bf16 model too)
        return self.inner(dense.to(weight.device, weight.dtype), sparse.to(weight.device)).float().cpu()


@register_runner("gpu-dlrm")
class GpuRankerRunner(Runner):
    """A DLRM as fused bf16 GPU inference with CUDA graphs per batch bucket (CPU fallback without CUDA).

    Inputs ``dense`` float [B, n_dense] and ``sparse`` int64 [B, F]; output logits float32 [B].
    Options: ``device`` (default CUDA when available), ``dtype`` (bf16), ``cuda_graphs``, ``buckets``,
    ``use_triton``. Tolerance: bf16 weights and activations (measured ~5e-3 of the logits' scale).
    """

    tolerance = Tolerance(rtol=3e-2, atol=1e-3)

    def __init__(
        self,
        module: nn.Module,
        example_inputs: Inputs,
        *,
        threads: int = 1,
        max_batch: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.bfloat16,
        cuda_graphs: bool = True,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        use_triton: bool | None = None,
    ) -> None:
        if not isinstance(module, DLRM):
            raise ConfigError(f"runner 'gpu-dlrm' needs a models.rankers.DLRM, got {type(module).__name__}")
        super().__init__(_OnDevice(module), example_inputs, threads=threads, max_batch=max_batch)
        if set(self.input_names) != {"dense", "sparse"}:
            raise ConfigError(f"runner 'gpu-dlrm' takes inputs 'dense' and 'sparse', got {list(self.input_names)}")
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.fused = FusedDLRM(module, dtype=dtype, use_triton=use_triton).to(self.device).eval()
        self.cardinalities = self.fused.cardinalities.cpu().numpy()
        self.graphed = (
            GraphedRanker(self.fused, self.fused.n_dense, self.fused.n_features, buckets=buckets, device=self.device)
            if cuda_graphs and self.device.type == "cuda"
            else None
        )

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        dense, sparse = inputs["dense"], inputs["sparse"]
        if dense.dtype.kind == "f" and not np.isfinite(dense).all():
            raise DataError("'dense' holds NaN or infinite values", source="dense")
        bad = (sparse < 0) | (sparse >= self.cardinalities[None, :])
        if bad.any():
            row, col = (int(v[0]) for v in np.nonzero(bad))
            raise DataError(f"sparse[{row}, {col}] = {sparse[row, col]} is outside table {col} "
                            f"(size {self.cardinalities[col]})", source="sparse")  # fmt: skip
        with torch.no_grad():
            dense_t = torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32)).to(self.device)
            sparse_t = torch.from_numpy(np.ascontiguousarray(sparse, dtype=np.int64)).to(self.device)
            logits = self.graphed(dense_t, sparse_t) if self.graphed is not None else self.fused(dense_t, sparse_t)
        return logits.float().cpu().numpy()


__all__ = ["GpuRankerRunner"]
