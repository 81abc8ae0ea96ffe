"""Making the model variants of the search space from the reference model (turborec.compress)."""

from __future__ import annotations

from dataclasses import replace

from turborec.compress import compress_estimator, distill_retrieval, model_nbytes, student_estimator
from turborec.data.splits import Split
from turborec.errors import ConfigError
from turborec.train.recommender import Recommender
from turborec.tune.space import ModelVariant


def build_variant(
    reference: Recommender,
    variant: ModelVariant,
    split: Split,
    *,
    students: dict[int, Recommender],
    train_seconds: float = 60.0,
) -> Recommender:
    """The estimator ``variant`` describes. Students are distilled from ``reference`` (at most
    ``train_seconds`` of training) and cached in ``students`` by width, so ``student-d32+int8``
    reuses ``student-d32``. Raises ConfigError when the variant does not apply to this model."""
    if variant.is_reference:
        return reference
    base = reference
    if variant.dim is not None:
        base = students.get(variant.dim) or _distill(reference, variant.dim, split, train_seconds)
        students[variant.dim] = base
    if variant.quantize is None and not variant.quantize_mlp and variant.prune is None:
        return base
    return compress_estimator(base, quantize=variant.quantize, quantize_mlp=variant.quantize_mlp, prune=variant.prune)


def _distill(reference: Recommender, dim: int, split: Split, seconds: float) -> Recommender:
    hidden = getattr(reference.config, "hidden", None)
    sizes: dict[str, object] = {"dim": dim}
    if isinstance(hidden, tuple):
        sizes["hidden"] = tuple(min(h, 4 * dim) for h in hidden)
    try:
        student = student_estimator(reference, **sizes)
    except TypeError as exc:  # an estimator without these sizes
        raise ConfigError(f"cannot make a student of {type(reference).__name__}: {exc}") from exc
    student.train_config = replace(student.train_config, max_seconds=seconds, progress=False)
    return distill_retrieval(reference, student, split.train, split.valid)


def weights_mb(rec: Recommender) -> float:
    return model_nbytes(rec.fitted_net) / 1e6


__all__ = ["build_variant", "weights_mb"]
