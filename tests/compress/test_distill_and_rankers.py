"""Distillation (retrieval and rankers) against the same student trained without its teacher, and
ranker compression round trips through save_ranker / turborec.compress.load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from turborec.compress import (
    DistillConfig,
    compress_ranker,
    distill_ranker,
    distill_retrieval,
    load,
    save_ranker,
    student_estimator,
    student_ranker,
)
from turborec.data.ctr import SyntheticCTRConfig, shuffle_split
from turborec.data.ctr.synthetic import synthetic_ctr
from turborec.errors import ArtifactError, ConfigError
from turborec.models.compact import Int8RowwiseEmbedding
from turborec.models.compact_linear import Int8DynamicLinear
from turborec.models.rankers import build_ranker
from turborec.train import TwoTowerRecommender
from turborec.train import load as plain_load
from turborec.train.ctr import CTRTrainConfig, fit_ranker, load_ranker, predict_ranker


def softmax_gap(teacher: Any, student: Any) -> float:
    """Mean KL(teacher || student) of the softmax over each user's unseen items (what is recommended)."""
    users = np.arange(len(teacher.users))
    seen = torch.from_numpy(teacher.histories.to_csr().toarray() > 0)
    t = torch.log_softmax(torch.from_numpy(teacher.score_users(users)).masked_fill(seen, -1e4), dim=1)
    s = torch.log_softmax(torch.from_numpy(student.score_users(users)).masked_fill(seen, -1e4), dim=1)
    return float(torch.nn.functional.kl_div(s, t, log_target=True, reduction="batchmean"))


def test_students_must_be_smaller(two_tower: Any) -> None:  # teacher: dim 32, hidden (64,)
    with pytest.raises(ConfigError, match="dim=64 is larger than the teacher's 32"):
        student_estimator(two_tower, dim=64)
    with pytest.raises(ConfigError, match=r"hidden=\(64, 64\) is larger than the teacher's \(64,\)"):
        student_estimator(two_tower, hidden=(64, 64))
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['dimension'\]"):
        student_estimator(two_tower, dimension=8)
    with pytest.raises(ConfigError, match="nothing is smaller"):
        student_estimator(two_tower, dim=32)
    student = student_estimator(two_tower, dim=8, hidden=(16,))
    assert isinstance(student, TwoTowerRecommender) and student.net is None
    assert student.config.dim == 8 and student.config.temperature == two_tower.config.temperature


def test_distilled_student_follows_its_teacher_more_than_the_control(
    two_tower: Any, small_split: Any, tmp_path: Path
) -> None:
    sizes = {"dim": 8, "hidden": (16,)}
    control = student_estimator(two_tower, **sizes).fit(small_split.train, small_split.valid)
    distilled = distill_retrieval(two_tower, student_estimator(two_tower, **sizes), small_split.train,
                                  small_split.valid, DistillConfig(alpha=10.0, top_k=20))  # fmt: skip
    assert distilled.aux_loss is None  # the teacher's term is not left behind
    assert softmax_gap(two_tower, distilled) < 0.9 * softmax_gap(two_tower, control)
    # a distilled student is a plain estimator: no transforms, the ordinary loader reads it
    again = plain_load(distilled.save(tmp_path / "student"))
    assert np.array_equal(again.score_users(np.arange(5)), distilled.score_users(np.arange(5)))


@pytest.fixture(scope="module")
def ctr() -> Any:
    data = synthetic_ctr(SyntheticCTRConfig(n_rows=30_000, vocab_sizes=(20, 50, 100, 300, 10), seed=1)).data
    return shuffle_split(data, (0.8, 0.1, 0.1), seed=0)


@pytest.fixture(scope="module")
def dlrm(ctr: Any) -> Any:
    train, valid, _ = ctr
    torch.manual_seed(0)
    model = build_ranker("dlrm", {"embedding_dim": 16, "bottom_mlp": (32,), "top_mlp": (64, 32), "wide": True},
                         cardinalities=train.cardinalities, n_dense=train.n_dense)  # fmt: skip
    fit_ranker(model, train, valid, CTRTrainConfig(epochs=3, batch_size=512, lr=3e-3, progress=False))
    return model


def test_compressed_ranker_round_trips_with_identical_predictions(dlrm: Any, ctr: Any, tmp_path: Path) -> None:
    _, _, test = ctr
    small = compress_ranker(dlrm, quantize="int8", quantize_mlp=True, prune=0.5)
    assert isinstance(small.embeddings.tables["sparse_3"], Int8RowwiseEmbedding)
    assert small.embedding_plan.spec("linear_3").kind == "fp16"  # 1-wide: int8 would grow it
    assert isinstance(small.top[0], Int8DynamicLinear) and small.top[0].out_features == 32
    loaded = load(save_ranker(tmp_path / "r", small))
    assert np.array_equal(loaded.predict(test), predict_ranker(small, test))
    with pytest.raises(ArtifactError, match=r"load it with turborec\.load\b"):
        load_ranker(tmp_path / "r")
    full = predict_ranker(dlrm, test)
    assert np.abs(predict_ranker(compress_ranker(dlrm, quantize="int8"), test) - full).max() < 0.02


def test_distilled_ranker_matches_teacher_scores_better_than_the_control(dlrm: Any, ctr: Any) -> None:
    train, valid, test = ctr
    config = CTRTrainConfig(epochs=2, batch_size=512, lr=3e-3, progress=False)
    sizes = {"embedding_dim": 4, "top_mlp": (16,)}
    with pytest.raises(ConfigError, match="embedding_dim=32 is larger"):
        student_ranker(dlrm, embedding_dim=32)
    torch.manual_seed(0)
    control = student_ranker(dlrm, **sizes)
    fit_ranker(control, train, valid, config)
    torch.manual_seed(0)
    student = student_ranker(dlrm, **sizes)
    distill_ranker(dlrm, student, train, valid, config, alpha=0.7)
    teacher = predict_ranker(dlrm, test)
    gap = {name: float(np.mean((predict_ranker(m, test) - teacher) ** 2)) for name, m in
           (("control", control), ("distilled", student))}  # fmt: skip
    assert gap["distilled"] < 0.8 * gap["control"], gap
