"""The on-device networks as torch modules: what is trained, checked against the server, and exported.

Both take the session's embeddings as *inputs* (int8 row-wise tables: ``q`` uint8 [N, d], ``scale`` and
``bias`` fp32 [N]) rather than as weights, so one exported model serves every session's candidates.
Lookups are gathers + masked sums (``pooled_lookup``), which export as plain ONNX ``Gather`` ops.

- :class:`EdgeUserModel`: the two-tower's ``user_vectors`` with its item table replaced by the session
  table: ``(history [B, L] int32 rows, input table, user_part [B, d]) -> user vector [B, v]``.
- :class:`DotScorer`: ``user_vec @ items.T`` (the two-tower's own score).
- :class:`MLPReranker`: a tiny wide-and-deep MLP over per-candidate features (session score, server
  score, similarity to the recent and the last click, popularity prior).
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import nn

from turborec.models.embeddings import pooled_lookup
from turborec.models.two_tower import TwoTowerNet

M = TypeVar("M", bound=nn.Module)
N_FEATURES = 5  # session score, server score, recent-click score, last-click score, prior


def dequantize(q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """value = q * scale + bias for an int8 row-wise table (the shared format of turborec.models.compact)."""
    return q.to(torch.float32) * scale.unsqueeze(-1) + bias.unsqueeze(-1)


class _Int8Rows(nn.Module):
    """A table module over int8 row-wise tensors: ``rows(idx) -> [..., d]`` dequantizing only gathered rows."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.q, self.scale, self.bias = q, scale, bias

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return dequantize(self.q[indices], self.scale[indices], self.bias[indices])


class _BoundRows(nn.Module):
    """An int8 row-wise table whose tensors are bound per call (they are graph inputs, not weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: _Int8Rows | None = None

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        assert self.rows is not None, "bind the session table first"
        return self.rows(indices)


class _BoundUserPart(nn.Module):
    """Stands in for the user-id table: returns the server's user part whatever the index."""

    def __init__(self) -> None:
        super().__init__()
        self.part: torch.Tensor | None = None

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        assert self.part is not None, "bind the user part first"
        return self.part


def _shallow(module: M) -> M:
    """A copy sharing parameters and buffers but with its own submodule dict (so parts can be swapped)."""
    out = copy.copy(module)
    out._modules = dict(module._modules)
    return out


class EdgeUserModel(nn.Module):
    """The two-tower's ``user_vectors`` with its item table replaced by the session's int8 input table and
    its user-id table by the server's ``user_part`` (the user's id-embedding row, zeros when anonymous).

    The net's own ``user_vectors`` and ``UserTower.forward`` run unchanged on shallow copies, so whatever
    the server computes after the tower (temperature, bias column) the device computes too.
    ``user_part`` is an input only when the tower uses user ids.
    """

    def __init__(self, net: TwoTowerNet) -> None:
        super().__init__()
        self.use_user_id = net.user_tower.user_emb is not None
        tower = _shallow(net.user_tower)
        self._rows = _BoundRows()
        self._user = _BoundUserPart()
        tower.item_emb = self._rows
        if self.use_user_id:
            tower.user_emb = self._user
        self._net = _shallow(net)
        self._net.user_tower = tower

    def forward(
        self,
        history: torch.Tensor,
        input_q: torch.Tensor,
        input_scale: torch.Tensor,
        input_bias: torch.Tensor,
        user_part: torch.Tensor | None = None,
    ) -> torch.Tensor:
        idx = history.long()
        self._rows.rows = _Int8Rows(input_q, input_scale, input_bias)
        self._user.part = user_part
        users = torch.zeros_like(idx[:, 0])  # "known": the user part itself is zero for anonymous users
        try:
            return self._net.user_vectors(users, idx)
        finally:
            self._rows.rows, self._user.part = None, None


class DotScorer(nn.Module):
    """Scores = session user vector . candidate vector (what the server's two-tower would compute)."""

    kind = "dot"

    def forward(
        self, user_vec: torch.Tensor, item_q: torch.Tensor, item_scale: torch.Tensor, item_bias: torch.Tensor
    ) -> torch.Tensor:
        return user_vec @ dequantize(item_q, item_scale, item_bias).T


class MLPReranker(nn.Module):
    """Wide-and-deep scorer over 5 per-candidate features; [B, C] scores.

    Features: <session user, item>, <server user, item> (the two-tower's scores), the cosine of the
    item with the mean of the last K clicked items and with the last clicked item, and a popularity prior. ``recent`` holds candidate rows of the last
    K clicks, newest first, -1 padded; with no clicks the two click features are 0.
    """

    kind = "mlp"
    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.wide = nn.Linear(N_FEATURES, 1)
        self.deep = nn.Sequential(nn.Linear(N_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        # feature standardization measured on the training sessions (constants in the exported graph)
        self.register_buffer("feature_mean", torch.zeros(N_FEATURES))
        self.register_buffer("feature_std", torch.ones(N_FEATURES))

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std.clamp_min(1e-6))

    def features(
        self,
        user_vec: torch.Tensor,
        server_vec: torch.Tensor,
        recent: torch.Tensor,
        items: torch.Tensor,
        prior: torch.Tensor,
    ) -> torch.Tensor:
        """[B, C, 5] features from float candidate vectors ``items`` [C, v]; click similarities are cosines."""
        unit = items / items.norm(dim=1, keepdim=True).clamp_min(1e-6)
        rows = _PlainRows(unit)
        idx = recent.long()
        recent_mean = pooled_lookup(rows, idx, "mean")
        last = pooled_lookup(rows, idx[:, :1], "sum")
        items_t, unit_t = items.T, unit.T
        feats = [user_vec @ items_t, server_vec @ items_t, recent_mean @ unit_t, last @ unit_t]
        feats.append(prior.unsqueeze(0).expand_as(feats[0]))
        return torch.stack(feats, dim=-1)

    def forward(
        self,
        user_vec: torch.Tensor,
        server_vec: torch.Tensor,
        recent: torch.Tensor,
        item_q: torch.Tensor,
        item_scale: torch.Tensor,
        item_bias: torch.Tensor,
        prior: torch.Tensor,
    ) -> torch.Tensor:
        feats = self.features(user_vec, server_vec, recent, dequantize(item_q, item_scale, item_bias), prior)
        return self.score_features(feats)

    def score_features(self, feats: torch.Tensor) -> torch.Tensor:
        z = (feats - self.feature_mean) / self.feature_std
        return (self.wide(z) + self.deep(z)).squeeze(-1)


class _PlainRows(nn.Module):
    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.table[indices]
