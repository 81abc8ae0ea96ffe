"""GPU backend: Triton kernels where PyTorch is slow, pure-PyTorch paths for CPU and CI.

- :mod:`.embedding`: pooled lookup over fp32 / fp16 / bf16 / int8 / int4 row-wise tables.
- :mod:`.topk`: exact top-K by inner product without materialising the score matrix.
- :mod:`.ranker`, :mod:`.graphs`, :mod:`.runner`: fused DLRM inference, CUDA-graph buckets, the Runner.
- :mod:`.index`: :class:`GpuExactIndex`, an ``"Exact"`` :class:`~turborec.retrieval.base.Index` on the device.

Importing this package never imports Triton (the kernel modules ``_*_kernel(s).py`` are imported
inside the functions that launch them), so it works on machines without CUDA or Triton.
"""

from turborec.backends.gpu._device import triton_available
from turborec.backends.gpu.embedding import (
    FloatRows,
    Int4Rows,
    Int8Rows,
    KernelConfig,
    PooledTable,
    pooled_table_from_module,
)
from turborec.backends.gpu.graphs import DEFAULT_BUCKETS, GraphedRanker
from turborec.backends.gpu.index import GpuExactIndex
from turborec.backends.gpu.ranker import FusedDLRM
from turborec.backends.gpu.runner import GpuRankerRunner
from turborec.backends.gpu.topk import TopKConfig, TopKStats, exact_topk, topk_blocked

__all__ = [
    "DEFAULT_BUCKETS",
    "FloatRows",
    "FusedDLRM",
    "GpuExactIndex",
    "GpuRankerRunner",
    "GraphedRanker",
    "Int4Rows",
    "Int8Rows",
    "KernelConfig",
    "PooledTable",
    "TopKConfig",
    "TopKStats",
    "exact_topk",
    "pooled_table_from_module",
    "topk_blocked",
    "triton_available",
]
