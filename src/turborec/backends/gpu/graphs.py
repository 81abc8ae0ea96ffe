"""CUDA-graph replay of a ranker for fixed batch buckets.

A small batch spends most of its time launching kernels; a captured graph replays all of them
with one launch. Each bucket (batch size) gets its own graph, captured on first use into one
shared memory pool; a batch is padded up to the smallest bucket that holds it (padding rows
use row 0 of every table), and batches larger than the largest bucket run in slices of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from turborec.errors import ConfigError, DataError

DEFAULT_BUCKETS = (1, 8, 64, 512, 4096, 65536)
WARMUP_CALLS = 3  # before capture, so lazy initialisation (cuBLAS handles, Triton compiles) stays out of the graph

RankerForward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    dense: torch.Tensor
    sparse: torch.Tensor
    out: torch.Tensor


class GraphedRanker:
    """``forward(dense [B, n_dense], sparse int64 [B, F]) -> [B]`` replayed from CUDA graphs.

    Outputs are fresh tensors (copied out of the graph's static buffer)."""

    def __init__(
        self,
        forward: RankerForward,
        n_dense: int,
        n_sparse: int,
        *,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        device: torch.device | str = "cuda",
        dense_dtype: torch.dtype = torch.float32,
    ) -> None:
        if not buckets or any(isinstance(b, bool) or int(b) < 1 for b in buckets):
            raise ConfigError(f"buckets must be positive batch sizes, got {tuple(buckets)}")
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ConfigError(f"CUDA graphs need a CUDA device, got '{self.device}'")
        self.forward = forward
        self.n_dense, self.n_sparse = int(n_dense), int(n_sparse)
        self.buckets = tuple(sorted({int(b) for b in buckets}))
        self.dense_dtype = dense_dtype
        self._captured: dict[int, _Captured] = {}
        self._pool: Any = None  # one memory pool shared by every bucket's graph

    def bucket_for(self, batch: int) -> int:
        """The smallest bucket holding ``batch`` rows (the largest bucket for bigger batches)."""
        for bucket in self.buckets:
            if bucket >= batch:
                return bucket
        return self.buckets[-1]

    def capture(self, bucket: int) -> None:
        """Capture the graph of ``bucket`` now (otherwise on first use)."""
        if bucket in self._captured:
            return
        if bucket not in self.buckets:
            raise ConfigError(f"{bucket} is not one of the buckets {self.buckets}")
        dense = torch.zeros((bucket, self.n_dense), dtype=self.dense_dtype, device=self.device)
        sparse = torch.zeros((bucket, self.n_sparse), dtype=torch.long, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(WARMUP_CALLS):
                self.forward(dense, sparse)
        torch.cuda.current_stream(self.device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool), torch.no_grad():
            out = self.forward(dense, sparse)
        self._captured[bucket] = _Captured(graph, dense, sparse, out)

    def __call__(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        if (
            dense.shape[0] != sparse.shape[0]
            or sparse.shape[1:] != (self.n_sparse,)
            or dense.shape[1:] != (self.n_dense,)
        ):
            raise DataError(f"expected dense [B, {self.n_dense}] and sparse [B, {self.n_sparse}], got "
                            f"{tuple(dense.shape)} and {tuple(sparse.shape)}")  # fmt: skip
        largest = self.buckets[-1]
        if dense.shape[0] > largest:
            parts = [self(dense[s : s + largest], sparse[s : s + largest]) for s in range(0, dense.shape[0], largest)]
            return torch.cat(parts)
        return self.replay(dense, sparse).clone()

    def replay(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """Run one bucket and return a view of its static output (valid until the next replay)."""
        batch = dense.shape[0]
        bucket = self.bucket_for(batch)
        self.capture(bucket)
        captured = self._captured[bucket]
        captured.dense[:batch].copy_(dense, non_blocking=True)
        captured.sparse[:batch].copy_(sparse, non_blocking=True)
        captured.graph.replay()
        return captured.out[:batch]


__all__ = ["DEFAULT_BUCKETS", "GraphedRanker"]
