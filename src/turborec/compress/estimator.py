"""Compressing whole models: a fitted retrieval estimator or CTR ranker in, a new one of the same class out.

:class:`Compression` says what to do (quantize tables, quantize MLPs to dynamic int8, prune hidden
neurons, fine-tune) and is checked against the model before any work. The transforms run in a
fixed order: prune -> fine-tune (tables fake-quantized when they are going to int8/int4, i.e.
quantization-aware) -> quantize tables -> quantize MLPs. The result is a normal estimator (ranker)
whose ``transforms`` (``transform_records``) say what was done, so it saves with ``save`` and
loads with :func:`load`, which replays those records around the weight load.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from turborec.compress._netwalk import copy_with, find_tables, select_linears, tag_table, transform_records
from turborec.compress.prune import find_hidden_layers, prune_neurons
from turborec.compress.quantize import TABLE_QUANT_KINDS, quantize_embeddings, quantize_mlp_dynamic, tables_to_quantize
from turborec.compress.records import TransformReplay
from turborec.errors import ConfigError, DataError, NotFittedError
from turborec.models.compact_qat import FAKE_QUANT_BITS, FakeQuantEmbedding

if TYPE_CHECKING:
    from turborec.data.ctr import CTREncoder
    from turborec.data.ctr.containers import CTRData
    from turborec.data.interactions import Interactions
    from turborec.models.rankers import RankerNet
    from turborec.train.ctr import CTRTrainConfig, LoadedRanker
    from turborec.train.recommender import Recommender

Finetune = Callable[[nn.Module], None]


@dataclass(frozen=True)
class Compression:
    """What to do to a model; the options are checked on construction, against a model by :meth:`check`.

    quantize:        embedding table storage, 'fp16' | 'bf16' | 'int8' | 'int4' (None = keep)
    tables:          which tables (plan names); None = every table the kind makes smaller
    quantize_mlp:    swap every Linear layer outside the tables for a dynamic int8 one
    prune:           fraction in (0, 1) of the hidden units removed from every prunable hidden layer
    finetune_epochs: epochs of fine-tuning after pruning, with the tables fake-quantized when
                     ``quantize`` is int8/int4 (quantization-aware); needs training data. With
                     validation data the best epoch is kept, and the starting weights when no
                     epoch beats them
    finetune_lr:     learning rate of that fine-tuning (None = a quarter of the model's own)
    narrow_tables:   storage for the tables ``quantize`` cannot shrink when ``tables`` is None (a
                     1-wide per-item bias grows as int8: each row also keeps an fp32 scale and bias);
                     None leaves them as they are
    """

    quantize: str | None = None
    tables: tuple[str, ...] | None = None
    quantize_mlp: bool = False
    prune: float | None = None
    finetune_epochs: int = 0
    finetune_lr: float | None = None
    narrow_tables: str | None = "fp16"

    def __post_init__(self) -> None:
        if self.quantize is not None and self.quantize not in TABLE_QUANT_KINDS:
            raise ConfigError(f"quantize: unknown kind '{self.quantize}' (choose from {', '.join(TABLE_QUANT_KINDS)})")
        if self.prune is not None and (
            isinstance(self.prune, bool) or not isinstance(self.prune, (int, float)) or not 0.0 < self.prune < 1.0
        ):
            raise ConfigError(f"prune must be a fraction strictly between 0 and 1, got {self.prune!r}")
        if isinstance(self.finetune_epochs, bool) or not isinstance(self.finetune_epochs, int) or self.finetune_epochs < 0:
            raise ConfigError(f"finetune_epochs must be a non-negative integer, got {self.finetune_epochs!r}")
        if self.finetune_lr is not None and not self.finetune_lr > 0:
            raise ConfigError(f"finetune_lr must be positive, got {self.finetune_lr!r}")
        if self.narrow_tables is not None and self.narrow_tables not in ("fp16", "bf16"):
            raise ConfigError(f"narrow_tables must be 'fp16', 'bf16' or None, got {self.narrow_tables!r}")
        if self.tables is not None and self.quantize is None:
            raise ConfigError("tables= names the tables to quantize; give quantize= too")

    @property
    def empty(self) -> bool:
        return self.quantize is None and not self.quantize_mlp and self.prune is None and not self.finetune_epochs

    @property
    def quantization_aware(self) -> bool:
        return self.finetune_epochs > 0 and self.quantize in FAKE_QUANT_BITS

    def check(self, net: nn.Module) -> None:
        """Every check the transforms will make, without doing them (ConfigError naming the problem)."""
        if self.empty:
            raise ConfigError("nothing to do: give quantize, quantize_mlp, prune or finetune_epochs")
        if self.quantize is not None:
            tables_to_quantize(net, self.quantize, self.tables)
        if self.prune is not None and not find_hidden_layers(net):
            raise ConfigError(
                f"prune: {type(net).__name__} has no hidden layer to prune "
                "(needs nn.Linear -> activation -> nn.Linear inside an nn.Sequential)"
            )
        if self.quantize_mlp:
            select_linears(net, None, "quantize_mlp")

    def apply(self, net: nn.Module, finetune: Finetune | None = None) -> nn.Module:
        """A compressed copy of ``net`` (``net`` itself is untouched). ``finetune(net)`` trains in place."""
        self.check(net)
        if self.finetune_epochs and finetune is None:
            raise ConfigError("finetune_epochs needs training data to fine-tune on")
        out = copy_with(net, {}, inplace=False)
        if self.prune is not None:
            out = prune_neurons(out, self.prune, inplace=True)
        if self.finetune_epochs:
            assert finetune is not None
            if self.quantization_aware:
                assert self.quantize is not None
                fake_quantize_tables(out, self.quantize, self.tables)
            finetune(out)
        if self.quantize is not None:
            narrow = self._narrow_tables(out)
            out = quantize_embeddings(out, self.quantize, self.tables, inplace=True)
            if narrow:
                assert self.narrow_tables is not None
                out = quantize_embeddings(out, self.narrow_tables, narrow, inplace=True)
        if self.quantize_mlp:
            out = quantize_mlp_dynamic(out, inplace=True)
        return out.eval()


    def _narrow_tables(self, net: nn.Module) -> list[str]:
        """Dense plan-built tables that ``quantize`` leaves out but ``narrow_tables`` shrinks."""
        if self.tables is not None or self.narrow_tables is None or self.quantize in ("fp16", "bf16"):
            return []
        assert self.quantize is not None
        chosen = {id(r.module) for r in tables_to_quantize(net, self.quantize)}
        return sorted({str(r.name) for r in find_tables(net)
                       if r.name is not None and id(r.module) not in chosen and isinstance(r.module, nn.Embedding)})  # fmt: skip


def fake_quantize_tables(net: nn.Module, kind: str, tables: Iterable[str] | None = None) -> nn.Module:
    """Swap (in place) the tables ``quantize_embeddings(net, kind, tables)`` would convert for trainable
    fake-quantized copies (:class:`FakeQuantEmbedding`), for quantization-aware fine-tuning."""
    refs = tables_to_quantize(net, kind, tables)
    dense = [r for r in refs if isinstance(r.module, nn.Embedding)]
    if len(dense) < len(refs):
        raise ConfigError("quantization-aware fine-tuning needs dense tables (a pruned_rows table is not one)")
    swaps: dict[int, nn.Module] = {}
    for ref in dense:
        assert isinstance(ref.module, nn.Embedding)
        swaps[id(ref.module)] = tag_table(FakeQuantEmbedding.wrapping(ref.module, kind), ref.name)
    return copy_with(net, swaps, inplace=True)


# ------------------------------------------------------------------ retrieval estimators
def compress_estimator(
    est: Recommender,
    *,
    quantize: str | None = None,
    tables: Iterable[str] | None = None,
    quantize_mlp: bool = False,
    prune: float | None = None,
    finetune_epochs: int = 0,
    finetune_lr: float | None = None,
    train: Interactions | None = None,
    valid: Interactions | None = None,
) -> Recommender:
    """A compressed copy of the fitted estimator ``est`` (same class; ``est`` is untouched).

    ``train`` / ``valid`` (the split ``est`` was fitted on) are needed for ``finetune_epochs``;
    fine-tuning runs the estimator's own training (``fit(..., warm_start=True)``) with early
    stopping on ``valid``. The result's ``transforms`` list what was done; ``save`` it as usual and
    read it back with :func:`turborec.load` (any command takes it).
    """
    spec = Compression(quantize, None if tables is None else tuple(tables), quantize_mlp, prune, finetune_epochs,
                       finetune_lr)  # fmt: skip
    if est.net is None or est.histories is None:
        raise NotFittedError(f"{type(est).__name__} is not fitted; compress a fitted or loaded estimator")
    spec.check(est.net)
    if spec.finetune_epochs and train is None:
        raise ConfigError("finetune_epochs needs the training interactions (train=...)")
    out = copy.copy(est)
    out.metrics = {}
    finetune = _estimator_finetune(out, spec, train, valid) if train is not None else None
    net = spec.apply(est.net, finetune)
    out.net = net  # type: ignore[assignment]
    out.config = net.config  # type: ignore[attr-defined,assignment]  # the plan records the compressed tables
    out.transforms = transform_records(net)
    return out


def _estimator_finetune(
    est: Recommender, spec: Compression, train: Interactions, valid: Interactions | None
) -> Finetune:
    if train.users != est.users or train.items != est.items:
        raise DataError("train must use the vocabularies the estimator was fitted with (the same split)")

    def run(net: nn.Module) -> None:
        tuned = copy.copy(est)
        lr = spec.finetune_lr or est.train_config.lr / 4
        tuned.train_config = replace(est.train_config, epochs=spec.finetune_epochs, lr=lr)
        tuned.net = net  # type: ignore[assignment]
        before = _valid_ndcg(tuned, valid)
        start = copy.deepcopy(net.state_dict())
        tuned.fit(train, valid, warm_start=True)
        est.fit_seconds = est.fit_seconds + tuned.fit_seconds
        after = _valid_ndcg(tuned, valid)
        if before is not None and after is not None and after < before:  # the (quantized) start was better
            net.load_state_dict(start)

    return run


def _valid_ndcg(est: Recommender, valid: Interactions | None) -> float | None:
    if valid is None or len(valid) == 0:
        return None
    net = est.net
    assert net is not None
    net.eval()
    return float(est.evaluate(valid, ks=(10,))["ndcg@10"])


# ------------------------------------------------------------------ CTR rankers
def compress_ranker(
    model: RankerNet,
    *,
    quantize: str | None = None,
    tables: Iterable[str] | None = None,
    quantize_mlp: bool = False,
    prune: float | None = None,
    finetune_epochs: int = 0,
    finetune_lr: float | None = None,
    train: CTRData | None = None,
    valid: CTRData | None = None,
    train_config: CTRTrainConfig | None = None,
) -> RankerNet:
    """A compressed copy of a trained ranker; fine-tuning runs ``fit_ranker`` on ``train`` / ``valid``.
    Save it with :func:`save_ranker` (which stores its transform records) and read it with :func:`load`."""
    from turborec.train.ctr import CTRTrainConfig, fit_ranker

    spec = Compression(quantize, None if tables is None else tuple(tables), quantize_mlp, prune, finetune_epochs,
                       finetune_lr)  # fmt: skip
    spec.check(model)
    if spec.finetune_epochs and train is None:
        raise ConfigError("finetune_epochs needs the training rows (train=...)")
    finetune = None
    if train is not None:
        base = train_config or CTRTrainConfig(progress=False)
        tune = replace(base, epochs=spec.finetune_epochs or 1, lr=spec.finetune_lr or base.lr / 4,
                       embedding_lr=None if base.embedding_lr is None else (spec.finetune_lr or base.embedding_lr / 4))  # fmt: skip

        def finetune(net: nn.Module) -> None:
            from turborec.train.ctr import evaluate_ranker

            before = None if valid is None else evaluate_ranker(net, valid)["auc"]  # type: ignore[arg-type]
            start = copy.deepcopy(net.state_dict())
            result = fit_ranker(net, train, valid, tune)  # type: ignore[arg-type]
            if before is not None and result.best_valid_auc < before:  # the (quantized) start was better
                net.load_state_dict(start)

    out = spec.apply(model, finetune)
    return out  # type: ignore[return-value]


def save_ranker(
    path: str | Path,
    model: RankerNet,
    *,
    encoder: CTREncoder | None = None,
    metrics: dict[str, float] | None = None,
    train_config: CTRTrainConfig | None = None,
) -> Path:
    """``turborec.train.ctr.save_ranker`` with ``model``'s transform records, so :func:`load` rebuilds it."""
    from turborec.train.ctr import save_ranker as save

    return save(path, model, encoder=encoder, metrics=metrics, train_config=train_config,
                transforms=transform_records(model))  # fmt: skip


# ------------------------------------------------------------------ loading
def artifact_kind(path: str | Path) -> str | None:
    """The ``kind`` a manifest declares (None when unreadable: the real loader then says why)."""
    try:
        with open(Path(path) / "manifest.json", encoding="utf-8") as f:
            manifest: Any = json.load(f)
    except (OSError, ValueError):
        return None
    return str(manifest.get("kind")) if isinstance(manifest, dict) else None


def load(path: str | Path, device: str = "cpu") -> Recommender | LoadedRanker:
    """A retrieval or ranker artifact, compressed or not (its transform records are replayed).

    :func:`turborec.load` opens every kind (pipelines and tune folders too) and is what commands use."""
    if artifact_kind(path) == "ranker":
        from turborec.train.ctr import load_ranker

        if device != "cpu":
            raise ConfigError("rankers load on the CPU (move the loaded model yourself)")
        return load_ranker(path, hooks=TransformReplay())
    from turborec.train.recommender import load as load_retrieval

    return load_retrieval(path, device=device, hooks=TransformReplay())


__all__ = [
    "Compression",
    "artifact_kind",
    "compress_estimator",
    "compress_ranker",
    "fake_quantize_tables",
    "load",
    "save_ranker",
]
