"""What every CTR ranker shares: the per-feature embedding collection, the MLP builder,
the ``RankerNet`` base (constructor shape, forward contract) and rebuilding by kind.

Contract: ``Ranker(config, *, cardinalities, n_dense, embeddings=EmbeddingPlan())`` and
``forward(dense: float32[B, n_dense], sparse: int64[B, n_sparse]) -> logits[B]``
(apply a sigmoid for click probabilities). Forward passes are gathers and dense
algebra with no data-dependent Python branches, so they trace and export.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from turborec.errors import ConfigError
from turborec.models.base import NetConfig, net_class
from turborec.models.embeddings import EmbeddingPlan

# tables of at most this many values in all are looked up as one concatenated matrix (copied each call)
FUSED_LOOKUP_MAX = 1 << 20


class SparseEmbeddings(nn.Module):
    """One table per sparse feature, each built by the plan as ``f"{prefix}_{i}"``
    (``sparse_0``, ``sparse_1``, ...), so compression can swap any of them.

    When every table is a plain ``nn.Embedding`` and all of them hold at most :data:`FUSED_LOOKUP_MAX`
    values, a lookup concatenates them and gathers every field's rows in one call: bit for bit the
    same values and gradients as a lookup per table, without F small gathers, a stack and F backward
    kernels per batch (per-step overhead dominated small-batch CTR epochs). Ids must be in range (the
    encoder's are): an id past its table would read the next table's row instead of failing."""

    offsets: torch.Tensor  # first row of each table in the concatenation

    def __init__(self, cardinalities: Sequence[int], dim: int, plan: EmbeddingPlan, prefix: str = "sparse") -> None:
        super().__init__()
        self.dim = dim
        self.tables = nn.ModuleDict(
            {f"{prefix}_{i}": plan.build(f"{prefix}_{i}", int(card), dim) for i, card in enumerate(cardinalities)}
        )
        cards = torch.tensor([0, *(int(c) for c in cardinalities)], dtype=torch.int64)
        self.register_buffer("offsets", torch.cumsum(cards, 0)[:-1], persistent=False)

    def _fusable(self) -> list[nn.Embedding] | None:
        tables = [t for t in self.tables.values() if type(t) is nn.Embedding]
        if len(tables) < len(self.tables) or sum(t.weight.numel() for t in tables) > FUSED_LOOKUP_MAX:
            return None
        if any(t.padding_idx is not None or t.max_norm is not None or t.sparse for t in tables):
            return None
        return tables

    def forward(self, sparse: torch.Tensor) -> torch.Tensor:
        """int64 [B, F] -> [B, F, dim]."""
        tables = self._fusable()
        if tables is not None:
            # index_select, whose backward (index_add_) sums the same rows in the same order as embedding's
            # but several times faster on CPU (embedding's dense backward adds one row per tensor op)
            ids = (sparse + self.offsets).reshape(-1)
            return torch.cat([t.weight for t in tables]).index_select(0, ids).view(*sparse.shape, self.dim)
        return torch.stack([table(sparse[:, i]) for i, table in enumerate(self.tables.values())], dim=1)

    def squared_norm(self, sparse: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the squared norms of the looked-up rows (an L2 penalty
        that touches only rows in the batch, as sparse CTR training wants). A lookup of its own: reusing
        the forward pass's would sum the two gradients in another order and change the trained weights."""
        return self(sparse).pow(2).sum(dim=(1, 2)).mean()


class FirstOrder(nn.Module):
    """Per-category scalar weights (1-d tables named ``linear_i``) plus a linear term on the
    dense features: logistic regression's logit, without the bias. An optional "wide" part
    of deep rankers (DeepCTR adds it to every model): on small data it carries the
    main effects that the deep part would otherwise have to learn through its embeddings."""

    def __init__(self, cardinalities: Sequence[int], n_dense: int, plan: EmbeddingPlan) -> None:
        super().__init__()
        self.weights = SparseEmbeddings(cardinalities, 1, plan, prefix="linear")
        self.dense = nn.Linear(n_dense, 1, bias=False) if n_dense else None

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        logit = self.weights(sparse).sum(dim=(1, 2))
        if self.dense is not None:
            logit = logit + self.dense(dense).squeeze(-1)
        return logit


class LinearTerms(NamedTuple):
    """Where a ranker keeps logistic regression's parameters (what a warm start from LR fills)."""

    tables: SparseEmbeddings  # 1-d per-category weights
    dense: nn.Linear | None  # weights of the dense features (its own bias, if any, is zeroed by a warm start)
    bias: torch.Tensor  # the logit's one-element bias


# a warm start shrinks the latent factors of factorization terms by this much (init std 0.05 -> 5e-5): their
# pairwise products then move the starting logits by ~1e-7, below float32 resolution, while Adam (which
# normalises gradient size) grows them again from the first steps; zero factors would never move
FACTOR_START_SCALE = 1e-3


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    *,
    dropout: float = 0.0,
    out_dim: int | None = None,
    last_activation: bool = False,
) -> nn.Sequential:
    """Linear-ReLU(-Dropout) layers over ``hidden`` widths, then an optional ``Linear(out_dim)``
    (with a ReLU after it only when ``last_activation``)."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    if out_dim is not None:
        layers.append(nn.Linear(width, out_dim))
        if last_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def mlp_width(in_dim: int, hidden: Sequence[int], out_dim: int | None = None) -> int:
    if out_dim is not None:
        return out_dim
    return hidden[-1] if hidden else in_dim


class RankerNet(nn.Module):
    """Base of CTR rankers: scores (dense, sparse) feature rows with one logit each.

    ``calibration`` holds ``(scale, shift)`` applied to the logit last (:meth:`calibrate`): identity
    by default; Platt scaling fitted on validation rows (``turborec.train.ctr.calibrate_ranker``)
    fixes an over-confident net's logloss without changing its ranking (scale > 0).
    """

    kind: ClassVar[str] = ""
    config_class: ClassVar[type[NetConfig]] = NetConfig
    calibration: torch.Tensor

    def __init__(
        self, config: NetConfig, *, cardinalities: Sequence[int], n_dense: int, embeddings: EmbeddingPlan
    ) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        cards = tuple(int(c) for c in cardinalities)
        if not cards or min(cards) < 1:
            raise ConfigError(f"cardinalities must be a non-empty list of sizes >= 1, got {cards}")
        if n_dense < 0:
            raise ConfigError(f"n_dense must be >= 0, got {n_dense}")
        self.config = config
        self.cardinalities = cards
        self.n_dense = int(n_dense)
        self.embedding_plan = embeddings
        self.register_buffer("calibration", torch.tensor([1.0, 0.0]))

    def calibrate(self, logit: torch.Tensor) -> torch.Tensor:
        return logit * self.calibration[0] + self.calibration[1]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # artifacts saved before Platt calibration existed hold no "calibration": identity is what they scored
        # with, so they load as they were instead of failing on a missing key
        state_dict.setdefault(prefix + "calibration", torch.tensor([1.0, 0.0]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def first_order(self) -> FirstOrder | None:
        """The optional first-order ("wide") term added to the logit; None when the ranker has none."""
        wide = getattr(self, "wide", None)
        return wide if isinstance(wide, FirstOrder) else None

    def output_layer(self) -> nn.Linear:
        """The last linear layer, whose output (plus the first-order term) is the logit."""
        raise ConfigError(f"{type(self).__name__} has no single output layer")

    def linear_terms(self) -> LinearTerms | None:
        """Logistic regression's parameters inside this ranker (None when it has no first-order part):
        by default the wide term's tables and dense weights and the output layer's bias."""
        wide = self.first_order()
        if wide is None:
            return None
        bias = self.output_layer().bias
        assert bias is not None
        return LinearTerms(wide.weights, wide.dense, bias)

    def silence_interactions(self) -> None:
        """Set the non-linear part so the logit equals the linear terms' (the start of a warm start from LR);
        by default zero the output layer's weights (its bias is the logit's bias)."""
        with torch.no_grad():
            self.output_layer().weight.zero_()

    def embedding_collections(self) -> list[SparseEmbeddings]:
        return [m for m in self.modules() if isinstance(m, SparseEmbeddings)]

    def embedding_l2(self, sparse: torch.Tensor) -> torch.Tensor:
        """Sum over all tables of the batch-mean squared norm of the rows ``sparse`` looks up."""
        total = torch.zeros((), device=sparse.device)
        for collection in self.embedding_collections():
            total = total + collection.squared_norm(sparse)
        return total


def check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")


def check_widths(name: str, widths: Sequence[int]) -> None:
    if any(w < 1 for w in widths):
        raise ConfigError(f"{name} widths must be >= 1, got {tuple(widths)}")


def check_dropout(value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {value}")


def build_ranker(
    kind: str,
    config: NetConfig | Mapping[str, Any] | None = None,
    *,
    cardinalities: Sequence[int],
    n_dense: int,
    embeddings: EmbeddingPlan | None = None,
) -> RankerNet:
    """Build a registered ranker by kind ('logreg', 'dlrm', 'dcnv2', 'deepfm'), e.g. from an artifact."""
    cls = net_class(kind)
    if not (isinstance(cls, type) and issubclass(cls, RankerNet)):
        raise ConfigError(f"network kind '{kind}' is not a CTR ranker")
    if config is None:
        cfg = cls.config_class()
    elif isinstance(config, NetConfig):
        cfg = config
    else:
        cfg = cls.config_class.from_dict(config)
    return cls(cfg, cardinalities=cardinalities, n_dense=n_dense, embeddings=embeddings or EmbeddingPlan())
