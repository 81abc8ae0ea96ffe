"""DLRM inference fused for a GPU: one table, one gather+interaction kernel, fused Linear+ReLU.

:class:`FusedDLRM` is built from the project's ``models.rankers.DLRM`` (same weights, same
function) and computes its logits with far fewer kernels:

- all sparse tables concatenated into one [sum(cardinalities), d] table (bf16 by default);
- the gather of every feature's row, the pairwise dots and the concat with the bottom-MLP
  vector as one Triton kernel (``_interaction_kernel``); the PyTorch path does the same with
  a gather, a bmm and an index_select;
- each Linear+ReLU as one cuBLASLt call with the bias and ReLU in its epilogue
  (``torch._addmm_activation``), widths padded to multiples of 8 so the tensor cores take them.

Few, fixed kernels are what CUDA-graph replay (``graphs.GraphedRanker``) wants for small batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from turborec.backends.gpu._device import use_triton_for
from turborec.errors import ConfigError
from turborec.models.rankers.dlrm import DLRM

ALIGN = 8  # bf16 tensor-core GEMMs want widths that are multiples of 8 elements (16 bytes)


def _round_up(n: int, m: int = ALIGN) -> int:
    return -(-n // m) * m


def _dense_layers(seq: nn.Sequential, where: str) -> list[tuple[nn.Linear, bool]]:
    """(Linear, followed-by-ReLU) pairs of an MLP; Dropout is skipped (inference)."""
    layers: list[tuple[nn.Linear, bool]] = []
    for module in seq:
        if isinstance(module, nn.Linear):
            layers.append((module, False))
        elif isinstance(module, nn.ReLU) and layers and not layers[-1][1]:
            layers[-1] = (layers[-1][0], True)
        elif not isinstance(module, nn.Dropout):
            raise ConfigError(f"{where}: cannot fuse a {type(module).__name__} layer (expected Linear/ReLU/Dropout)")
    return layers


class FusedLinear(nn.Module):
    """y = x @ W.T + b (then ReLU), input width padded with zero columns to ``in_width``."""

    def __init__(self, linear: nn.Linear, relu: bool, in_width: int, dtype: torch.dtype, out_width: int) -> None:
        super().__init__()
        device = linear.weight.device
        weight = torch.zeros(out_width, in_width, dtype=dtype, device=device)
        weight[: linear.out_features, : linear.in_features] = linear.weight.detach().to(dtype)
        bias = torch.zeros(out_width, dtype=dtype, device=device)
        if linear.bias is not None:
            bias[: linear.out_features] = linear.bias.detach().to(dtype)
        self.weight = nn.Parameter(weight, requires_grad=False)  # [out, in], as nn.Linear stores it
        self.bias = nn.Parameter(bias, requires_grad=False)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu:
            return torch._addmm_activation(self.bias, x, self.weight.t())
        return torch.addmm(self.bias, x, self.weight.t())


def _mlp(
    layers: Sequence[tuple[nn.Linear, bool]], in_width: int, dtype: torch.dtype, last_width: int | None
) -> nn.Sequential:
    """Fused layers; hidden widths padded to ALIGN, the last one ``last_width`` (default: unpadded)."""
    out: list[nn.Module] = []
    width = in_width
    for n, (linear, relu) in enumerate(layers):
        if n < len(layers) - 1:
            out_width = _round_up(linear.out_features)
        else:
            out_width = linear.out_features if last_width is None else last_width
        out.append(FusedLinear(linear, relu, width, dtype, out_width))
        width = out_width
    return nn.Sequential(*out)


class FusedDLRM(nn.Module):
    """Inference-only DLRM with the same function as ``model`` (an ``models.rankers.DLRM``).

    ``forward(dense float [B, n_dense], sparse int64 [B, F]) -> logits float32 [B]``.
    ``use_triton`` None picks the fused gather+interaction kernel on CUDA when Triton is there.
    """

    table: torch.Tensor
    offsets: torch.Tensor
    cardinalities: torch.Tensor
    pair_index: torch.Tensor

    def __init__(self, model: DLRM, *, dtype: torch.dtype = torch.bfloat16, use_triton: bool | None = None) -> None:
        super().__init__()
        if getattr(model, "wide", None) is not None:
            raise ConfigError("FusedDLRM cannot fuse DLRM's first-order term (DLRMConfig(wide=True))")
        weights = []
        for name, table in model.embeddings.tables.items():
            weight = getattr(table, "weight", None)
            if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or not weight.is_floating_point():
                raise ConfigError(f"table '{name}' ({type(table).__name__}) has no float weight [num, dim]: the fused "
                                  "ranker needs dense or fp16 tables")  # fmt: skip
            weights.append(weight.detach())
        self.dim = int(weights[0].shape[1])
        self.n_features = len(weights)
        self.n_dense = model.n_dense
        self.has_dense = model.bottom is not None
        self.dtype = dtype
        self.use_triton = use_triton
        cards = torch.tensor([w.shape[0] for w in weights], dtype=torch.long, device=weights[0].device)
        self.register_buffer("table", torch.cat(weights).to(dtype), persistent=False)
        self.register_buffer("offsets", torch.cumsum(cards, 0) - cards, persistent=False)
        self.register_buffer("cardinalities", cards, persistent=False)
        self.dense_width = _round_up(max(self.n_dense, 1))
        self.bottom = (
            _mlp(_dense_layers(model.bottom, "bottom MLP"), self.dense_width, dtype, last_width=self.dim)
            if model.bottom is not None
            else None
        )
        n_vectors = self.n_features + int(self.has_dense)
        self.interaction_width = self.dim * int(self.has_dense) + n_vectors * (n_vectors - 1) // 2
        self.top_width = _round_up(self.interaction_width)
        rows, cols = torch.triu_indices(n_vectors, n_vectors, offset=1, device=weights[0].device)
        self.register_buffer("pair_index", rows * n_vectors + cols, persistent=False)
        self.top = _mlp(_dense_layers(model.top, "top MLP"), self.top_width, dtype, last_width=None)

    def prepare_dense(self, dense: torch.Tensor) -> torch.Tensor:
        """float [B, n_dense] -> the bottom MLP's padded input [B, dense_width] in the compute dtype."""
        x = dense.to(self.dtype)
        if self.dense_width != self.n_dense:
            x = torch.nn.functional.pad(x, (0, self.dense_width - self.n_dense))
        return x

    def interaction(self, x: torch.Tensor | None, sparse: torch.Tensor) -> torch.Tensor:
        """[dense vector, pairwise dots, zero padding] -> [B, top_width]."""
        batch = sparse.shape[0]
        pow2 = self.dim >= 16 and self.dim & (self.dim - 1) == 0
        if pow2 and use_triton_for(sparse, self.use_triton):
            from turborec.backends.gpu import _interaction_kernel

            out = torch.empty((batch, self.top_width), dtype=self.dtype, device=sparse.device)
            dense = x if x is not None else out  # ignored by the kernel without a dense vector
            _interaction_kernel.launch(dense, self.table, sparse, self.offsets, out, has_dense=self.has_dense,
                                       block_s=4, num_warps=4)  # fmt: skip
            return out
        vectors = torch.nn.functional.embedding(sparse + self.offsets, self.table)
        if x is not None:
            vectors = torch.cat([x.unsqueeze(1), vectors], dim=1)
        pairs = torch.bmm(vectors, vectors.transpose(1, 2)).flatten(1).index_select(1, self.pair_index)
        parts = [x, pairs] if x is not None else [pairs]
        if self.top_width != self.interaction_width:
            parts.append(pairs.new_zeros(batch, self.top_width - self.interaction_width))
        return torch.cat(parts, dim=1)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        x = self.bottom(self.prepare_dense(dense)) if self.bottom is not None else None
        return self.top(self.interaction(x, sparse))[:, 0].float()


__all__ = ["FusedDLRM", "FusedLinear"]
