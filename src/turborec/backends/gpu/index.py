"""Exact inner-product search on a GPU behind the project's :class:`~turborec.retrieval.base.Index`.

:class:`GpuExactIndex` is an ``"Exact"`` index (same spec, same artifact, same contract: numpy
in, ``(ids int64, scores float32)`` out, exclusions honoured) whose catalog also lives on the
device in bf16 (or fp16 / fp32) and whose search runs :func:`topk.exact_topk`: the two-pass Triton
kernels on CUDA, blocked PyTorch elsewhere. Scores are fp32 sums over the stored precision, so
with bf16 storage they are those of the bf16-rounded vectors. A saved GpuExactIndex loads as a
CPU ``ExactIndex``; :meth:`GpuExactIndex.from_index` moves any exact index to the device.
"""

from __future__ import annotations

import numpy as np
import torch

from turborec.backends.gpu.topk import TopKConfig, exact_topk
from turborec.errors import ConfigError
from turborec.retrieval._exclude import Exclusions
from turborec.retrieval.base import Index
from turborec.retrieval.exact import ExactIndex
from turborec.retrieval.spec import parse_spec

STORAGE_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


class GpuExactIndex(ExactIndex):
    """Brute-force top-k on a device; ``device`` None = CUDA when available, else CPU."""

    def __init__(
        self,
        dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.bfloat16,
        query_batch: int = 8192,
        config: TopKConfig | None = None,
    ) -> None:
        super().__init__(parse_spec("Exact"), dim, "ip")
        if dtype not in STORAGE_DTYPES:
            raise ConfigError(f"GpuExactIndex dtype must be one of {STORAGE_DTYPES}, got {dtype}")
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = dtype
        self.config = config
        self._gpu_query_batch = query_batch
        self._device_items: torch.Tensor | None = None

    @classmethod
    def from_index(cls, index: ExactIndex, **kwargs: object) -> GpuExactIndex:
        """A device copy of an inner-product ``ExactIndex`` (same vectors and ids)."""
        if index.metric != "ip":
            raise ConfigError(f"GpuExactIndex supports metric 'ip' only, got '{index.metric}'")
        gpu = cls(index.dim, **kwargs)  # type: ignore[arg-type]
        gpu.add(index.vectors(), index.ids.copy())
        return gpu

    def _add_vectors(self, vectors: np.ndarray) -> None:
        super()._add_vectors(vectors)
        self._device_items = None

    def device_items(self) -> torch.Tensor:
        """The catalog on the device in the storage dtype [ntotal, dim] (uploaded on first use)."""
        if self._device_items is None:
            self._device_items = torch.from_numpy(self.vectors()).to(self.device, self.dtype).contiguous()
        return self._device_items

    def _search_positions(
        self, queries: np.ndarray, fetch: int, shared: np.ndarray | None, widen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        n = self.ntotal
        width = min(n, fetch + (shared.size if shared is not None else 0))
        items = self.device_items()
        out_pos = np.empty((queries.shape[0], width), dtype=np.int64)
        out_scores = np.empty((queries.shape[0], width), dtype=np.float32)
        for start in range(0, queries.shape[0], self._gpu_query_batch):
            q = torch.from_numpy(queries[start : start + self._gpu_query_batch]).to(self.device)
            scores, positions = exact_topk(q, items, width, config=self.config)
            out_pos[start : start + q.shape[0]] = positions.cpu().numpy()
            out_scores[start : start + q.shape[0]] = scores.cpu().numpy()
        if shared is None:
            return out_pos[:, :fetch], out_scores[:, :fetch]
        keep = ~np.isin(out_pos, shared)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :fetch]  # kept ones first, best-first order preserved
        kept_pos = np.take_along_axis(out_pos, order, axis=1)
        kept_scores = np.take_along_axis(out_scores, order, axis=1)
        dropped = ~np.take_along_axis(keep, order, axis=1)
        kept_pos[dropped], kept_scores[dropped] = -1, -np.inf
        return kept_pos, kept_scores

    def _search_excluding(self, queries: np.ndarray, k: int, exclusions: Exclusions) -> tuple[np.ndarray, np.ndarray]:
        # over-fetch by the exclusions and refill (the generic Index path), not the numpy masking of ExactIndex
        return Index._search_excluding(self, queries, k, exclusions)


__all__ = ["GpuExactIndex"]
