"""Knowledge distillation: a trained teacher teaches a smaller student of the same kind.

Retrieval (:func:`distill_retrieval`): the student trains with its own loss (sampled softmax
over in-batch and uniform negatives) plus ``alpha`` times the KL divergence between the teacher's
and the student's softmax over a shared candidate set: the teacher's top-K unseen items of
every user in the batch, the batch's positives and its uniform negatives. The teacher's top-K
items are where its ranking knowledge is (the items it predicts beyond the training data), and
the KL term hands the student the teacher's whole distribution over them, not one label.

Rankers (:func:`distill_ranker`): score matching by soft labels. The student trains with
binary cross-entropy against ``(1 - alpha) * label + alpha * p_teacher``, which equals
``(1 - alpha) * BCE(label) + alpha * KL(p_teacher || p_student)`` up to a constant.

Students are normal estimators / rankers (:func:`student_estimator`, :func:`student_ranker`
build them from the teacher with smaller sizes and check that they are smaller).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from turborec.errors import ConfigError, DataError, NotFittedError
from turborec.models.embeddings import EmbeddingPlan

if TYPE_CHECKING:
    from turborec.data.ctr.containers import CTRData
    from turborec.data.interactions import Interactions
    from turborec.models.base import NetConfig
    from turborec.models.rankers import RankerNet
    from turborec.train.ctr import CTRFitResult, CTRTrainConfig
    from turborec.train.recommender import Recommender


_MASKED = -1e4  # a logit whose softmax weight is 0 yet keeps the KL finite (-inf would give 0 * inf)


@dataclass(frozen=True)
class DistillConfig:
    """alpha: weight of the distillation term; temperature: softens both softmaxes (the term is
    scaled by temperature**2 so its gradients keep their size); top_k: the teacher's top items per
    user that join each batch's candidates. With the two-tower's per-user objective (the default)
    alpha=0.3 kept 99.4% of the teacher's validation NDCG@10 on ml-latest-small (dim-64 student,
    int4 tables), alpha=1 95.6%, alpha=3 94.4% (with the older pair objective alpha=3 had beaten
    alpha=1; benchmarks/compression.py, docs/compression.md)."""

    alpha: float = 0.3
    temperature: float = 1.0
    top_k: int = 50
    # the teacher's scores are divided by this instead of ``temperature`` (None: the same): a teacher
    # of another kind scores on another scale (EASE scores are ~0-1, two-tower logits ~10s)
    teacher_temperature: float | None = None

    def __post_init__(self) -> None:
        if not self.alpha > 0:
            raise ConfigError(f"distillation alpha must be positive, got {self.alpha!r}")
        if not self.temperature > 0:
            raise ConfigError(f"distillation temperature must be positive, got {self.temperature!r}")
        if self.teacher_temperature is not None and not self.teacher_temperature > 0:
            raise ConfigError(f"distillation teacher_temperature must be positive, got {self.teacher_temperature!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(f"distillation top_k must be a positive integer, got {self.top_k!r}")


# ------------------------------------------------------------------ student configs
def _param_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def smaller_config(teacher: NetConfig, overrides: Mapping[str, Any], what: str = "student") -> NetConfig:
    """``teacher`` with ``overrides`` applied; every size given must not exceed the teacher's
    (an int at most the teacher's, a tuple of widths no longer and no wider). Dense tables."""
    known = {f.name: f for f in dataclasses.fields(teacher)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        sizes = sorted(n for n in known if isinstance(getattr(teacher, n), (int, tuple))
                       and not isinstance(getattr(teacher, n), bool))
        raise ConfigError(f"{what}: unknown option(s) {unknown} for {type(teacher).__name__} (sizes: {sizes})")
    for name, value in overrides.items():
        mine = getattr(teacher, name)
        if isinstance(mine, bool) or not isinstance(mine, (int, tuple)):
            continue
        if isinstance(mine, int) and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError(f"{what}: {name} must be an integer like the teacher's {mine}, got {value!r}")
        if isinstance(mine, tuple) and not (isinstance(value, tuple) and all(isinstance(v, int) for v in value)):
            raise ConfigError(f"{what}: {name} must be a tuple of integers like the teacher's {mine}, got {value!r}")
        if isinstance(mine, int) and value > mine:
            raise ConfigError(f"{what}: {name}={value} is larger than the teacher's {mine}; distill to a smaller model")
        if isinstance(mine, tuple) and (len(value) > len(mine) or (value and max(value) > max(mine, default=0))):
            raise ConfigError(
                f"{what}: {name}={value} is larger than the teacher's {mine} (more layers or wider); "
                "distill to a smaller model"
            )
    updates = dict(overrides)
    for f in dataclasses.fields(teacher):  # a student trains dense tables; compress it afterwards
        if isinstance(getattr(teacher, f.name), EmbeddingPlan):
            updates[f.name] = EmbeddingPlan()
    return dataclasses.replace(teacher, **updates)  # type: ignore[type-var]


def student_estimator(teacher: Recommender, **sizes: Any) -> Recommender:
    """An unfitted estimator of ``teacher``'s class and training settings with smaller ``sizes``
    (e.g. ``dim=16, hidden=(64,)``); ConfigError if any size or the parameter count is not smaller."""
    if teacher.net is None:
        raise NotFittedError("the teacher is not fitted")
    config = smaller_config(teacher.config, sizes)
    student = type(teacher)(config, teacher.train_config)
    mine, theirs = _param_count(student.unfitted_net(teacher.dims())), _param_count(teacher.net)
    if mine >= theirs and theirs > 0:
        raise ConfigError(f"student: {sizes} gives {mine:,} parameters, the teacher has {theirs:,}; nothing is smaller")
    return student


def student_ranker(teacher: RankerNet, **sizes: Any) -> RankerNet:
    """An untrained ranker of ``teacher``'s kind with smaller ``sizes`` (e.g. ``embedding_dim=8``)."""
    from turborec.models.rankers import build_ranker

    config = smaller_config(teacher.config, sizes)
    student = build_ranker(teacher.kind, config, cardinalities=teacher.cardinalities, n_dense=teacher.n_dense)
    mine, theirs = _param_count(student), _param_count(teacher)
    if mine >= theirs:
        raise ConfigError(f"student: {sizes} gives {mine:,} parameters, the teacher has {theirs:,}; nothing is smaller")
    return student


# ------------------------------------------------------------------ retrieval
@torch.no_grad()
def teacher_top_items(teacher: Recommender, k: int, chunk: int = 1024) -> torch.Tensor:
    """LongTensor [n_users, k]: each user's top-k items by the teacher, training items excluded."""
    assert teacher.users is not None and teacher.histories is not None
    n_users = len(teacher.users)
    n_items = teacher.histories.n_items
    k = min(k, n_items)
    out = np.empty((n_users, k), dtype=np.int64)
    seen = teacher.histories.to_csr()
    for start in range(0, n_users, chunk):
        users = np.arange(start, min(start + chunk, n_users))
        scores = teacher.score_users(users)
        block = seen[users]
        rows = np.repeat(np.arange(len(users)), np.diff(block.indptr))
        scores[rows, block.indices] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        out[users] = top
    return torch.from_numpy(out)


def distill_retrieval(
    teacher: Recommender,
    student: Recommender,
    train: Interactions,
    valid: Interactions | None = None,
    config: DistillConfig | None = None,
) -> Recommender:
    """Fit ``student`` on ``train`` (early stopping on ``valid``) with the teacher's KL term added.

    The teacher can be any fitted retrieval estimator (an EASE teacher for a two-tower student
    works: its vectors are the history's multi-hot and the item-item weights); the student is
    usually :func:`student_estimator` of the teacher.

    The student's estimator must take an auxiliary loss (``aux_loss``, as the two-tower does);
    its own training is otherwise unchanged, so ``student.fit(train, valid)`` is the control.
    """
    cfg = config or DistillConfig()
    if not hasattr(type(student), "aux_loss"):
        raise ConfigError(f"{type(student).__name__} takes no auxiliary loss; distillation needs one (two-tower)")
    if teacher.net is None or teacher.histories is None:
        raise NotFittedError("the teacher is not fitted")
    if train.users != teacher.users or train.items != teacher.items:
        raise DataError("distillation: train must use the teacher's vocabularies (the split it was fitted on)")
    teacher_net = teacher.net.eval()
    top = teacher_top_items(teacher, cfg.top_k).to(student.device)
    with torch.no_grad():
        teacher_items = teacher_net.item_vectors().float().to(student.device)  # type: ignore[call-arg]
    tau = cfg.temperature
    tau_teacher = cfg.teacher_temperature or tau

    seen = teacher.histories.to_csr()

    def kd_loss(batch: Any) -> torch.Tensor:
        cand = torch.unique(torch.cat([top[batch.users].flatten(), batch.items, batch.negatives]))
        net = student.net
        assert net is not None
        # a retrieval net's score is the dot product of its vectors: that is each model's logit
        student_logits = net.user_vectors(batch.users, batch.history) @ net.item_vectors(cand).T  # type: ignore[call-arg]
        with torch.no_grad():
            teacher_users = teacher_net.user_vectors(batch.users, batch.history).float()
            teacher_logits = teacher_users @ teacher_items[cand].T
            # the distributions are over items a user has not interacted with: what gets recommended
            own = seen[batch.users.cpu().numpy()][:, cand.cpu().numpy()].toarray() > 0
            own_t = torch.from_numpy(own).to(student_logits.device)
        student_logits = student_logits.masked_fill(own_t, _MASKED)
        teacher_logits = teacher_logits.masked_fill(own_t, _MASKED)
        kl = F.kl_div(
            F.log_softmax(student_logits / tau, dim=-1),
            F.log_softmax(teacher_logits / tau_teacher, dim=-1),
            log_target=True,
            reduction="batchmean",
        )
        return cfg.alpha * tau * tau * kl

    student.aux_loss = kd_loss  # type: ignore[attr-defined]
    try:
        student.fit(train, valid)
    finally:
        del student.aux_loss  # type: ignore[attr-defined]
    student.metrics = {**student.metrics, "distilled_from": teacher.config.to_dict(), "distill": dataclasses.asdict(cfg)}
    return student


# ------------------------------------------------------------------ rankers
def distill_ranker(
    teacher: RankerNet,
    student: RankerNet,
    train: CTRData,
    valid: CTRData | None = None,
    config: CTRTrainConfig | None = None,
    alpha: float = 0.5,
) -> CTRFitResult:
    """Train ``student`` in place on soft labels ``(1 - alpha) * label + alpha * p_teacher`` (early
    stopping on ``valid``'s true labels); ``fit_ranker(student, train, valid, config)`` is the control."""
    from turborec.data.ctr.containers import CTRData
    from turborec.train.ctr import fit_ranker, predict_ranker

    if not 0.0 < alpha <= 1.0:
        raise ConfigError(f"distill_ranker alpha must be in (0, 1], got {alpha!r}")
    if train.label is None:
        raise DataError("distill_ranker: the training rows have no labels")
    soft = predict_ranker(teacher, train)
    mixed = ((1.0 - alpha) * train.label + alpha * soft).astype(np.float32)
    soft_train = CTRData(train.dense, train.sparse, mixed, train.cardinalities, train.dense_names, train.sparse_names)
    return fit_ranker(student, soft_train, valid, config)


__all__ = [
    "DistillConfig",
    "distill_ranker",
    "distill_retrieval",
    "smaller_config",
    "student_estimator",
    "student_ranker",
    "teacher_top_items",
]
