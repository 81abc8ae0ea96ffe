"""The search space: model variants, backends, indexes and micro-batching, ordered cheap to expensive.

Like FAISS's ``ParameterSpace``, each dimension is a list of values whose order carries a
monotonicity assumption, used only as an *optimistic bound* to skip candidates:

- model variants: a variant is no more accurate than its ``parent`` (int4 <= int8 <= fp16 <= fp32,
  a pruned or distilled model <= the model it came from);
- indexes: within one family, a larger ``efSearch`` / ``nprobe`` is no faster (and no less
  accurate) than a smaller one.

Stages run in this order: micro-batching and admission on the reference model (no build cost), backends
(an export each), indexes (a build each), compressed variants (seconds each), distilled
students (a training run each).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from turborec.errors import ConfigError
from turborec.serving.knobs import SERVICE_EXACT, ServingKnobs

DEFAULT_BACKENDS = ("torch-eager", "onnx-fp32", "onnx-int8", "torch-compile")
STAGES = ("batching", "admission", "backend", "index", "model")


@dataclass(frozen=True)
class ModelVariant:
    """How to make a model from the reference one. ``dim`` set = a distilled student of that width."""

    name: str
    quantize: str | None = None  # embedding tables: fp16 | int8 | int4
    quantize_mlp: bool = False  # MLPs to dynamic int8
    prune: float | None = None  # fraction of hidden units removed
    dim: int | None = None  # student width (None: the reference model's)
    parent: str | None = None  # accuracy(self) <= accuracy(parent), an optimistic bound

    @property
    def is_reference(self) -> bool:
        return self.quantize is None and not self.quantize_mlp and self.prune is None and self.dim is None

    @property
    def needs_training(self) -> bool:
        return self.dim is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Candidate:
    stage: str
    model: ModelVariant
    knobs: ServingKnobs

    @property
    def key(self) -> str:
        k = self.knobs
        return f"{self.model.name} · {k.backend} · {k.index} · {k.batching_label}"


@dataclass(frozen=True)
class SearchSpace:
    batching: tuple[tuple[int, float, str], ...]  # (max_batch, max_wait_ms, executor); the first is the baseline
    backends: tuple[str, ...]  # the first is the baseline
    indexes: tuple[str, ...]  # the first is the baseline
    models: tuple[ModelVariant, ...]  # the first is the reference model
    # admission thresholds tried after batching (the first is the service's default): a lower one sheds
    # sooner to protect the tail, a higher one answers more requests late rather than refusing them
    admission: tuple[float, ...] = (0.8,)
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not (self.batching and self.backends and self.indexes and self.models):
            raise ConfigError("the search space needs at least one value in every dimension")
        if not self.models[0].is_reference:
            raise ConfigError("the first model variant must be the reference model (no transform)")

    @property
    def baseline(self) -> ServingKnobs:
        b, w, e = self.batching[0]
        return ServingKnobs(self.backends[0], self.indexes[0], b, w, e)

    def size(self) -> int:
        """Candidates the staged search can consider (it never crosses every dimension with every other)."""
        return (len(self.batching) + len(self.admission) - 1 + len(self.backends) - 1 + len(self.indexes) - 1
                + len(self.models) - 1)


def default_indexes(n_items: int) -> tuple[str, ...]:
    """Exact scoring, FAISS flat, HNSW at two efSearch values, IVF at two nprobe values (nlist ~ sqrt(n))."""
    out = [SERVICE_EXACT, "Flat", "HNSW32|efSearch=16", "HNSW32|efSearch=64"]
    if n_items >= 1000:
        nlist = 2 ** max(2, round(math.log2(math.sqrt(n_items))))
        out += [f"IVF{nlist},Flat|nprobe={max(1, nlist // 16)}", f"IVF{nlist},Flat|nprobe={max(2, nlist // 4)}"]
    return tuple(out)


def default_models(teacher_dim: int, student_dims: Sequence[int] = ()) -> tuple[ModelVariant, ...]:
    """Reference, table precisions (fp16 > int8 > int4), int8 MLPs, pruning, then students (widest first)."""
    out = [
        ModelVariant("fp32"),
        ModelVariant("fp16", quantize="fp16", parent="fp32"),
        ModelVariant("int8", quantize="int8", parent="fp16"),
        ModelVariant("int8+mlp8", quantize="int8", quantize_mlp=True, parent="int8"),
        ModelVariant("int4", quantize="int4", parent="int8"),
        ModelVariant("prune50+int8", quantize="int8", prune=0.5, parent="int8"),
    ]
    parent = "fp32"
    for d in sorted({d for d in student_dims if 0 < d < teacher_dim}, reverse=True):
        out.append(ModelVariant(f"student-d{d}", dim=d, parent=parent))
        out.append(ModelVariant(f"student-d{d}+int8", dim=d, quantize="int8", parent=f"student-d{d}"))
        parent = f"student-d{d}"
    return tuple(out)


DEFAULT_BATCHING: tuple[tuple[int, float, str], ...] = (
    (64, 1.0, "thread"),  # what `turborec serve` runs by default
    (32, 0.5, "thread"),
    (8, 0.25, "thread"),
    (64, 1.0, "inline"),
    (16, 0.25, "inline"),
)


def default_space(
    n_items: int,
    teacher_dim: int,
    *,
    backends: Sequence[str] = DEFAULT_BACKENDS,
    student_dims: Sequence[int] | None = None,
) -> SearchSpace:
    dims = (teacher_dim // 2, teacher_dim // 4) if student_dims is None else tuple(student_dims)
    if not backends or backends[0] != "torch-eager":
        backends = ("torch-eager", *[b for b in backends if b != "torch-eager"])
    return SearchSpace(DEFAULT_BATCHING, tuple(backends), default_indexes(n_items), default_models(teacher_dim, dims),
                       admission=(0.8, 2.0))


# ------------------------------------------------------------------ monotone relations (bounds)
def index_family_rank(spec: str) -> tuple[str, int] | None:
    """(structure, knob value) for specs whose runtime knob orders speed: efSearch, nprobe."""
    structure, _, params = spec.partition("|")
    for name in ("efSearch", "nprobe"):
        for part in params.split(","):
            key, _, value = part.partition("=")
            if key.strip() == name and value.strip().isdigit():
                return structure, int(value)
    return None


def no_faster_than(slow: str, fast: str) -> bool:
    """Is index ``slow`` assumed no faster than ``fast`` (same structure, larger efSearch / nprobe)?"""
    a, b = index_family_rank(slow), index_family_rank(fast)
    return a is not None and b is not None and a[0] == b[0] and a[1] >= b[1]


def index_nbytes(spec: str, n_items: int, dim: int) -> int:
    """Estimated bytes of the retrieval structure over ``n_items`` vectors of width ``dim`` (fp32)."""
    vectors = n_items * dim * 4
    structure = spec.partition("|")[0]
    if structure.startswith("HNSW"):
        m = int("".join(ch for ch in structure[4:].split(",")[0] if ch.isdigit()) or 32)
        return vectors + n_items * m * 2 * 4  # level-0 links dominate
    if structure.startswith("IVF"):
        nlist = int("".join(ch for ch in structure[3:].split(",")[0] if ch.isdigit()) or 1)
        return vectors + n_items * 8 + nlist * dim * 4  # vectors + ids + centroids
    return vectors


def smallest_model_nbytes(n_users: int, n_items: int, dim: int, use_user_id: bool = True) -> int:
    """A lower bound on any variant's weights: the tables at int4 (half a byte a value plus an fp32
    scale and bias per row); hidden layers and features only add to it."""
    row = (dim + 1) // 2 + 8
    return (n_items + (n_users if use_user_id else 0)) * row


__all__ = [
    "DEFAULT_BACKENDS",
    "SERVICE_EXACT",
    "STAGES",
    "Candidate",
    "ModelVariant",
    "SearchSpace",
    "ServingKnobs",
    "default_indexes",
    "default_models",
    "default_space",
    "index_family_rank",
    "index_nbytes",
    "no_faster_than",
    "smallest_model_nbytes",
]
