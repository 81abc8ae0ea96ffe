"""The CTR training recipe: split, encode, (warm-start,) fit, calibrate, evaluate, save.

One recipe for ``turborec train --task ctr`` and ``benchmarks/ctr_accuracy.py``, so the CLI
trains what docs/benchmarks.md reports. Per data preset (``criteo``; ``avazu``, also used for
libfm's all-categorical rows) it holds the encoder options and, per ranker kind, the net and
training settings chosen on validation AUC in the benchmark's sweeps.

Steps, all seeded by ``seed`` (torch is seeded before any net is built, so two runs with one
seed give identical weights):

1. shuffle and split the raw rows 8:1:1 (``seed``), fit the encoder on the training part only;
2. fit logistic regression (LR): the baseline, and the warm start of every ranker with a
   first-order part (``warm_start_from_logreg``: LR's weights and bias copied into FM's and DeepFM's
   linear terms and the wide term of DLRM / DCN-V2 with ``wide=True``; the output layer zeroed and
   latent factors shrunk, so the net starts at LR's logits);
3. fit the ranker, early-stopping on validation AUC and logloss; a warm-started net is validated
   at its start too (step 0) and only checkpoints whose Platt-calibrated validation logloss is at
   or below the start's (LR's) are restored, the start itself when training never beats it;
4. Platt-calibrate it on validation rows, kept only when it lowers the validation logloss (AUC
   unchanged), and record whether its validation logloss is at or below LR's: for a warm-started
   net it is by construction (up to float32 rounding of the ~1e-7 the shrunk factors add);
5. score the test part. The artifact records the split (seed, ratios, rows) and a fingerprint of
   every training row, so ``turborec evaluate`` re-creates the same split and can refuse rows it
   trained on.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from turborec._util.options import field_kinds, parse_value
from turborec.data.ctr import CTRData, CTREncoder, RawCTR, row_fingerprints, shuffle_split
from turborec.errors import ConfigError
from turborec.models.base import net_class
from turborec.models.rankers import LogisticRegression, RankerNet, build_ranker, warm_start_from_logreg
from turborec.train.ctr import (
    CTRFitResult,
    CTRTrainConfig,
    calibrate_ranker,
    evaluate_ranker,
    fit_ranker,
    save_ranker,
)

KINDS = ("logreg", "fm", "dlrm", "dcnv2", "deepfm")
SPLIT = (0.8, 0.1, 0.1)
MAX_FINGERPRINTS = 2_000_000  # training-row hashes kept in an artifact (16 MB); more rows: a seeded sample


@dataclass(frozen=True)
class EncoderOptions:
    """:class:`CTREncoder` settings, each settable with ``--param`` (``min_freq=2``, ``hash_buckets=100000``)."""

    min_freq: int = 10
    standardize: bool = True
    dense_transform: str = "log1p"
    hash_buckets: int | None = None

    def __post_init__(self) -> None:
        self.build()  # the encoder's own checks (min_freq >= 1, known transform, buckets >= 1)
        if self.hash_buckets is not None and self.hash_buckets < 1:
            raise ConfigError(f"hash_buckets must be >= 1, got {self.hash_buckets}")

    def build(self) -> CTREncoder:
        return CTREncoder(min_freq=self.min_freq, standardize=self.standardize,
                          dense_transform=self.dense_transform, hash_buckets=self.hash_buckets)  # fmt: skip


def _train(**kw: Any) -> dict[str, Any]:
    return {"epochs": 40, "patience": 2, "batch_size": 256, "lr": 1e-3, "embedding_l2": 1e-3, "weight_decay": 0.01,
            **kw}  # fmt: skip


# preset -> encoder options and, per kind, (net config, training config); chosen on validation AUC
PRESETS: dict[str, dict[str, Any]] = {
    "criteo": {
        "encoder": {"min_freq": 10, "standardize": True},
        "models": {
            "logreg": ({}, _train(lr=3e-3, batch_size=128, weight_decay=0.0, eval_every=8, patience=8)),
            "fm": ({"embedding_dim": 8}, _train(lr=3e-3, batch_size=256, embedding_l2=1e-2, weight_decay=0.0,
                                                eval_every=8, patience=8)),
            "dlrm": ({"embedding_dim": 16, "bottom_mlp": (64,), "top_mlp": (32,), "dropout": 0.5, "wide": True},
                     _train(lr=1e-2, embedding_lr=0.1, embedding_l2=1e-2, weight_decay=0.1, batch_size=512, wide_lr=0.0,
                            eval_every=8, patience=8)),
            "dcnv2": ({"embedding_dim": 16, "n_cross": 1, "deep": (128, 64), "structure": "stacked", "dropout": 0.0,
                       "wide": True},
                      _train(lr=5e-3, embedding_lr=0.1, embedding_l2=1e-2, weight_decay=0.1, batch_size=256,
                             wide_lr=1e-4, eval_every=8, patience=8)),
            "deepfm": ({"embedding_dim": 8, "deep": (64, 32), "dropout": 0.0}, _train(batch_size=512)),
        },
    },
    "avazu": {
        "encoder": {"min_freq": 2, "standardize": True},
        "models": {
            "logreg": ({}, _train(lr=1e-2, eval_every=8, patience=8)),
            "fm": ({"embedding_dim": 8}, _train(lr=3e-3, embedding_l2=1e-2, weight_decay=0.0, eval_every=8,
                                                patience=8)),
            "dlrm": ({"embedding_dim": 32, "bottom_mlp": (), "top_mlp": (256, 128), "dropout": 0.2, "wide": True},
                     _train(lr=3e-3, embedding_lr=0.03, embedding_l2=1e-4, weight_decay=0.01, batch_size=128,
                            wide_lr=0.0, eval_every=8, patience=8)),
            "dcnv2": ({"embedding_dim": 16, "n_cross": 1, "deep": (64,), "structure": "stacked", "dropout": 0.2,
                       "wide": True},
                      _train(lr=1e-2, embedding_lr=0.1, embedding_l2=1e-4, weight_decay=0.01, batch_size=128,
                             wide_lr=0.0, eval_every=8, patience=8)),
            "deepfm": ({"embedding_dim": 8, "deep": (64, 32), "dropout": 0.5},
                       _train(embedding_l2=1e-2, weight_decay=0.1)),
        },
    },
}  # fmt: skip
# large synthetic click logs (benchmarks/ctr_accuracy.py): big batches, one validation per epoch, little regularisation
PRESETS["synthetic"] = {
    "encoder": {"min_freq": 1, "standardize": False, "dense_transform": "identity"},
    "models": {
        "logreg": ({}, _train(lr=1e-2, batch_size=4096, embedding_l2=0.0, weight_decay=0.0, epochs=8, patience=1)),
        "fm": ({"embedding_dim": 8}, _train(lr=1e-2, batch_size=2048, embedding_l2=0.0, weight_decay=0.0, epochs=10,
                                            patience=1)),
        "dlrm": ({"embedding_dim": 8, "bottom_mlp": (32,), "top_mlp": (64, 32)},
                 _train(lr=2e-3, batch_size=2048, embedding_l2=0.0, weight_decay=0.0, epochs=10, patience=1)),
        # one rank-32 cross layer (the paper's low-rank cross, as many layers as the criteo preset): ~4x the rows
        # per CPU second of the three full-rank layers it replaced, at a higher validation AUC and lower logloss
        # (docs/benchmarks.md, "CTR rankers: rows per epoch"); artifacts record their own net config
        "dcnv2": ({"embedding_dim": 8, "n_cross": 1, "low_rank": 32, "deep": (64, 32)},
                  _train(lr=2e-3, batch_size=2048, embedding_l2=0.0, weight_decay=0.0, epochs=10, patience=1)),
        "deepfm": ({"embedding_dim": 8, "deep": (64, 32)},
                   _train(lr=2e-3, batch_size=2048, embedding_l2=0.0, weight_decay=0.0, epochs=10, patience=1)),
    },
}  # fmt: skip
FORMAT_PRESETS = {"criteo": "criteo", "avazu": "avazu", "libfm": "avazu"}


@dataclass(frozen=True)
class CTRRecipe:
    kind: str = "dcnv2"
    net: Mapping[str, Any] = field(default_factory=dict)
    train: CTRTrainConfig = field(default_factory=CTRTrainConfig)
    logreg_train: CTRTrainConfig = field(default_factory=CTRTrainConfig)  # the baseline / warm start
    encoder: EncoderOptions = field(default_factory=EncoderOptions)
    warm_start: bool = True  # nets with a first-order part start from the fitted LR
    calibrate: bool = True  # Platt scaling on validation, and the LR logloss guard (logloss_cap_at_start)
    seed: int = 0
    threads: int = 1  # torch threads while training (one avoids oversubscribing a busy machine)
    split: tuple[float, ...] = SPLIT

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["net"] = dict(self.net)
        return out


RECIPE_OPTIONS = ("warm_start", "calibrate", "threads")


def ctr_recipe(
    kind: str = "dcnv2",
    preset: str = "criteo",
    params: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    epochs: int | None = None,
    progress: bool = False,
    device: str = "cpu",
    threads: int | None = None,
) -> CTRRecipe:
    """The preset's recipe for ``kind`` with ``params`` on top: net fields (``dim``, the embedding width; ``embedding_dim`` is its deprecated alias...),
    training fields (``lr``, ``select``...), encoder fields (``min_freq``...) or ``warm_start`` /
    ``calibrate`` / ``threads``; strings are parsed by type, every bad value is a one-line ConfigError."""
    if kind not in KINDS:
        raise ConfigError(f"unknown ranker '{kind}' (known: {', '.join(KINDS)})")
    if preset not in PRESETS:
        raise ConfigError(f"unknown CTR preset '{preset}' (known: {', '.join(PRESETS)})")
    setup = PRESETS[preset]
    net_cfg, train_kw = setup["models"][kind]
    lr_train = setup["models"]["logreg"][1]
    cfg_cls = net_class(kind).config_class  # type: ignore[attr-defined]
    kinds = {
        "net": field_kinds(cfg_cls),
        "train": field_kinds(CTRTrainConfig),
        "encoder": field_kinds(EncoderOptions),
        "recipe": {k: v for k, v in field_kinds(CTRRecipe).items() if k in RECIPE_OPTIONS},
    }
    kinds["net"].pop("embeddings", None)
    chosen: dict[str, dict[str, Any]] = {"net": dict(net_cfg), "train": dict(train_kw),
                                         "encoder": dict(setup["encoder"]), "recipe": {}}  # fmt: skip
    typed = {"seed": seed, "progress": progress, "device": device, **({"epochs": epochs} if epochs else {})}
    chosen["train"].update(typed)
    for key, raw in (params or {}).items():
        if key == "embedding_dim":
            warnings.warn("option embedding_dim is deprecated; use dim (the embedding width, as for retrieval models)",
                          FutureWarning, stacklevel=2)
        field = "embedding_dim" if key == "dim" else key  # one user-facing name for the width across models
        group = next((g for g in ("net", "train", "encoder", "recipe") if field in kinds[g]), None)
        if group is None:
            known = sorted({"dim" if k == "embedding_dim" else k for k in set().union(*kinds.values())})
            raise ConfigError(f"{kind}: unknown option '{key}'; known: {', '.join(known)}")
        chosen[group][field] = parse_value(key, raw, kinds[group][field])
    if threads is not None:
        chosen["recipe"]["threads"] = threads
    try:
        net = cfg_cls.from_dict(chosen["net"])
        train = CTRTrainConfig(**chosen["train"])
        encoder = EncoderOptions(**chosen["encoder"])
        recipe = CTRRecipe(kind=kind, net=net.to_dict(), train=train, encoder=encoder, seed=seed,
                           logreg_train=CTRTrainConfig(**{**lr_train, **typed, "epochs": lr_train["epochs"]}),
                           **chosen["recipe"])  # fmt: skip
    except ConfigError as exc:
        raise ConfigError(f"{kind}: {exc}") from None
    if recipe.threads < 1:
        raise ConfigError(f"option threads={recipe.threads}: must be >= 1")
    return recipe


@dataclass
class CTRRun:
    """A trained ranker and everything ``save_ctr_run`` records."""

    model: RankerNet
    encoder: CTREncoder
    fit: CTRFitResult
    metrics: dict[str, Any]
    recipe: CTRRecipe
    split: dict[str, Any]
    train_rows: np.ndarray  # uint64 fingerprints of the training rows
    logreg: LogisticRegression | None = None


def _seeded_build(kind: str, net: Mapping[str, Any], data: CTRData, seed: int) -> RankerNet:
    torch.manual_seed(seed)  # the net's initial weights depend on it
    return build_ranker(kind, net, cardinalities=data.cardinalities, n_dense=data.n_dense)


def train_ctr(raw: RawCTR, recipe: CTRRecipe) -> CTRRun:
    """Run ``recipe`` on labelled raw rows; see the module docstring for the steps."""
    if raw.label is None:
        from turborec.errors import DataError

        raise DataError("CTR training needs labelled rows", source=raw.source)
    torch.set_num_threads(recipe.threads)
    seed = recipe.seed
    train_raw, valid_raw, test_raw = shuffle_split(raw, recipe.split, seed=seed)
    encoder = recipe.encoder.build().fit(train_raw)
    train, valid, test = (encoder.transform(r) for r in (train_raw, valid_raw, test_raw))
    logreg: LogisticRegression | None = None
    logreg_seconds = 0.0
    metrics: dict[str, Any] = {}
    if recipe.kind != "logreg":
        lr_model = _seeded_build("logreg", {}, train, seed)
        assert isinstance(lr_model, LogisticRegression)
        logreg_seconds = fit_ranker(lr_model, train, valid, recipe.logreg_train).seconds
        logreg = lr_model
        lr_valid = evaluate_ranker(logreg, valid)
        metrics["logreg_valid_auc"], metrics["logreg_valid_logloss"] = lr_valid["auc"], lr_valid["logloss"]
    model = _seeded_build(recipe.kind, recipe.net, train, seed)
    warm = recipe.warm_start and logreg is not None and model.linear_terms() is not None
    train_config = recipe.train
    if warm:
        assert logreg is not None
        warm_start_from_logreg(model, logreg)
        # the start is LR: validate it and keep it unless training beats its (calibrated) validation logloss
        train_config = replace(train_config, logloss_cap_at_start=recipe.calibrate or train_config.logloss_cap_at_start)
    fit = fit_ranker(model, train, valid, train_config)
    if recipe.calibrate and recipe.kind != "logreg":
        scale, shift = calibrate_ranker(model, valid)
        metrics["calibration_scale"], metrics["calibration_shift"] = scale, shift
    valid_metrics = evaluate_ranker(model, valid)
    metrics.update({f"valid_{k}": v for k, v in valid_metrics.items()})
    if logreg is not None:  # the deep net must not be less calibrated than its baseline (on validation)
        metrics["valid_logloss_below_logreg"] = bool(valid_metrics["logloss"] <= metrics["logreg_valid_logloss"])
    metrics.update(evaluate_ranker(model, test))
    metrics.update(fit_seconds=fit.seconds + (logreg_seconds if warm else 0.0), warm_started=warm,
                   best_step=fit.best_step, steps=fit.steps)  # fmt: skip
    split = {"seed": seed, "ratios": list(recipe.split), "rows": len(raw), "source": raw.source}
    prints = row_fingerprints(train_raw)
    if len(prints) > MAX_FINGERPRINTS:
        prints = np.random.default_rng(seed).choice(prints, MAX_FINGERPRINTS, replace=False)
        split["fingerprints_sampled"] = True
    used = replace(recipe, train=train_config)  # the artifact records the training settings the fit ran with
    return CTRRun(model, encoder, fit, metrics, used, split, np.unique(prints), logreg)


def save_ctr_run(path: Any, run: CTRRun) -> Any:
    """Write the ranker artifact with the recipe, the split and the training-row fingerprints."""
    return save_ranker(
        path, run.model, encoder=run.encoder, metrics={**run.metrics, "split_seed": run.split["seed"]},
        train_config=run.recipe.train, split=run.split, train_rows=run.train_rows,
        extra_config={"recipe": run.recipe.to_dict()},
    )  # fmt: skip


__all__ = ["KINDS", "PRESETS", "CTRRecipe", "CTRRun", "EncoderOptions", "ctr_recipe", "save_ctr_run", "train_ctr"]
