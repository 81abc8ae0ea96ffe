"""Logistic regression as a ranker: one weight per category (a 1-d table per feature) plus
a linear term on the dense features. The baseline every deep ranker must beat."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from turborec.errors import ConfigError
from turborec.models.base import NetConfig, register_net
from turborec.models.embeddings import EmbeddingPlan
from turborec.models.rankers.common import RankerNet, SparseEmbeddings


@dataclass(frozen=True)
class LogRegConfig(NetConfig):
    """No hyper-parameters: regularise through the trainer (embedding_l2, weight_decay)."""


@register_net("logreg")
class LogisticRegression(RankerNet):
    config_class = LogRegConfig

    def __init__(
        self,
        config: LogRegConfig | None = None,
        *,
        cardinalities: Sequence[int],
        n_dense: int,
        embeddings: EmbeddingPlan = EmbeddingPlan(),  # noqa: B008  (frozen, shared default is safe)
    ) -> None:
        super().__init__(config or LogRegConfig(), cardinalities=cardinalities, n_dense=n_dense, embeddings=embeddings)
        self.weights = SparseEmbeddings(self.cardinalities, 1, embeddings)
        self.dense_linear = nn.Linear(n_dense, 1, bias=False) if n_dense else None
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        logit = self.weights(sparse).sum(dim=(1, 2)) + self.bias
        if self.dense_linear is not None:
            logit = logit + self.dense_linear(dense).squeeze(-1)
        return self.calibrate(logit)


def warm_start_from_logreg(model: RankerNet, logreg: LogisticRegression) -> None:
    """Start ``model`` at a fitted logistic regression: copy its per-category weights, dense weights and bias
    into the model's first-order part (:meth:`RankerNet.linear_terms`: FM's and DeepFM's linear terms, the wide
    term of DLRM / DCN-V2 with ``wide=True``) and silence the rest (:meth:`RankerNet.silence_interactions`:
    a zero output layer, tiny latent factors), so the starting logits are LR's. Training then only has to
    add what the interactions find beyond the main effects, and validating the start (the recipe does)
    gives early stopping an LR-equivalent checkpoint to keep when training never beats it."""
    terms = model.linear_terms()
    if terms is None:
        raise ConfigError(f"{type(model).__name__} has no first-order term to warm-start (set wide=True)")
    if model.cardinalities != logreg.cardinalities or model.n_dense != logreg.n_dense:
        raise ConfigError(
            f"the logistic regression has cardinalities {logreg.cardinalities} / {logreg.n_dense} dense; "
            f"the model {model.cardinalities} / {model.n_dense}"
        )
    with torch.no_grad():
        for target, source in zip(terms.tables.tables.values(), logreg.weights.tables.values()):
            target.load_state_dict(source.state_dict())
        if terms.dense is not None and logreg.dense_linear is not None:
            terms.dense.weight.copy_(logreg.dense_linear.weight)
            if terms.dense.bias is not None:
                terms.dense.bias.zero_()
        terms.bias.copy_(logreg.bias)
    model.silence_interactions()
