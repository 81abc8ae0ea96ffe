"""Training, evaluation and artifacts for CTR rankers.

``fit_ranker`` runs Adam(W) with separate learning rates for the embedding tables and for the
first-order terms warm-started from logistic regression (``wide_lr``; 0 keeps them fixed),
an L2 penalty on the embedding rows each batch looks up (``embedding_l2``; decaying
whole tables every step would wipe rare rows under Adam's normalisation), decoupled
weight decay on the dense layers, and early stopping on validation AUC and logloss with the
best weights restored (``logloss_cap_at_start``: only weights whose calibrated validation
logloss is at or below the start's, which for a warm-started net is LR's). ``save_ranker`` / ``load_ranker`` write and read artifacts of kind
"ranker": the net kind and config, cardinalities, n_dense, the embedding plan, the
encoder (``encoder.json``) and the weights (safetensors).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from turborec._util.artifact import load_artifact, save_artifact
from turborec._util.progress import bar as progress_bar
from turborec._util.progress import log_line
from turborec._util.smoke import smoke_seconds
from turborec.data.ctr import CTRData, CTREncoder, RawCTR
from turborec.errors import ArtifactError, ConfigError, DataError, TurborecError
from turborec.metrics.ctr import ctr_metrics
from turborec.models.embeddings import EmbeddingPlan
from turborec.models.rankers import RankerNet, build_ranker
from turborec.train.recommender import LoadHooks

RANKER_KIND = "ranker"
ENCODER_FILE = "encoder.json"
TRAIN_ROWS_FILE = "train_rows.safetensors"


@dataclass(frozen=True)
class CTRTrainConfig:
    epochs: int = 20
    batch_size: int = 1024
    lr: float = 1e-3
    embedding_lr: float | None = None  # None = lr
    wide_lr: float | None = None  # first-order term (wide=True); None = as the other tables, 0 = frozen
    weight_decay: float = 0.0  # decoupled (AdamW) decay of non-embedding parameters
    embedding_l2: float = 0.0  # L2 on looked-up embedding rows, per batch
    patience: int = 2  # evaluations with neither a better validation AUC nor a better logloss before stopping
    select: str = "auc"  # which checkpoint is restored: best validation "auc" or best "logloss"
    eval_every: int | None = None  # steps between validations; None = once per epoch
    # validate the starting weights too (step 0) and restore only checkpoints whose validation logloss after
    # Platt scaling is at or below the start's; the recipe sets it for nets warm-started at logistic
    # regression's logits, which then never end with a worse validation logloss than LR
    logloss_cap_at_start: bool = False
    eval_batch_size: int = 8192
    seed: int = 0
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("epochs, batch_size and eval_batch_size must be >= 1")
        if self.lr <= 0 or (self.embedding_lr is not None and self.embedding_lr <= 0):
            raise ConfigError(f"learning rates must be > 0, got lr={self.lr}, embedding_lr={self.embedding_lr}")
        if self.wide_lr is not None and self.wide_lr < 0:
            raise ConfigError(f"wide_lr must be >= 0 or None, got {self.wide_lr}")
        if self.weight_decay < 0 or self.embedding_l2 < 0 or self.patience < 0:
            raise ConfigError("weight_decay, embedding_l2 and patience must be >= 0")
        if self.eval_every is not None and self.eval_every < 1:
            raise ConfigError(f"eval_every must be >= 1 or None, got {self.eval_every}")
        if self.select not in ("auc", "logloss"):
            raise ConfigError(f"select must be 'auc' or 'logloss', got {self.select!r}")


@dataclass
class CTRFitResult:
    best_valid_auc: float  # of the restored checkpoint
    best_step: int
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    best_valid_logloss: float = math.nan  # of the restored checkpoint
    # per epoch: rows trained, and wall / process-CPU seconds of its training steps (validation excluded)
    epoch_rows: list[int] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_cpu_seconds: list[float] = field(default_factory=list)
    cpu_seconds: float = math.nan  # process CPU seconds of the whole fit (validation included)


def _check_inputs(model: RankerNet, data: CTRData, what: str, need_label: bool = True) -> None:
    if need_label and data.label is None:
        raise DataError(f"{what} rows have no labels")
    if data.n_dense != model.n_dense or data.n_sparse != len(model.cardinalities):
        raise DataError(
            f"{what} rows have {data.n_dense} dense / {data.n_sparse} sparse features; the model expects "
            f"{model.n_dense} / {len(model.cardinalities)}"
        )
    too_big = [(n, d, m) for n, d, m in zip(data.sparse_names, data.cardinalities, model.cardinalities) if d > m]
    if too_big:
        name, have, want = too_big[0]
        raise DataError(f"{what}: feature '{name}' has {have} categories but the model's table only {want}")


def _batches(
    data: CTRData, rows: np.ndarray, batch_size: int, device: str | torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    for start in range(0, len(rows), batch_size):
        idx = rows[start : start + batch_size]
        yield (
            torch.from_numpy(data.dense[idx]).to(device),
            torch.from_numpy(data.sparse[idx]).to(device),
            None if data.label is None else torch.from_numpy(data.label[idx]).to(device),
        )


def predict_ranker(model: RankerNet, data: CTRData, *, batch_size: int = 8192) -> np.ndarray:
    """Click probabilities float32 [N] for encoded rows (numpy out)."""
    _check_inputs(model, data, "prediction", need_label=False)
    # a compressed ranker may hold only buffers (int8 tables, int8 layers)
    device = next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device
    was_training = model.training
    model.eval()
    out = np.empty(len(data), dtype=np.float32)
    try:
        with torch.inference_mode():
            start = 0
            for dense, sparse, _ in _batches(data, np.arange(len(data)), batch_size, device):
                probs = torch.sigmoid(model(dense, sparse)).float().cpu().numpy()
                out[start : start + len(probs)] = probs
                start += len(probs)
    finally:
        model.train(was_training)
    return out


def evaluate_ranker(model: RankerNet, data: CTRData, *, batch_size: int = 8192) -> dict[str, float]:
    """``{"auc", "logloss", "calibration", "normalized_entropy"}`` on labelled encoded rows."""
    _check_inputs(model, data, "evaluation")
    assert data.label is not None
    return ctr_metrics(data.label, predict_ranker(model, data, batch_size=batch_size))


class CTRTrainer:
    """Fits a ranker on encoded rows; see :class:`CTRTrainConfig` for the options."""

    def __init__(self, config: CTRTrainConfig | None = None) -> None:
        self.config = config or CTRTrainConfig()

    def _optimizer(self, model: RankerNet) -> torch.optim.Optimizer:
        cfg = self.config
        terms = model.linear_terms() if cfg.wide_lr is not None else None
        wide = [] if terms is None else [*terms.tables.parameters(), *(terms.dense.parameters() if terms.dense else [])]
        wide_params = {id(p): p for p in wide}
        emb_params = {
            id(p): p for c in model.embedding_collections() for p in c.parameters() if id(p) not in wide_params
        }
        other = [p for p in model.parameters() if id(p) not in emb_params and id(p) not in wide_params]
        groups: list[tuple[list[nn.Parameter], float, float]] = [  # (parameters, lr, decoupled decay)
            (list(emb_params.values()), cfg.embedding_lr or cfg.lr, 0.0),
            (other, cfg.lr, cfg.weight_decay),
            # no decoupled decay: the wide tables get embedding_l2 like logistic regression's own weights
            (list(wide_params.values()), cfg.wide_lr or 0.0, 0.0),
        ]
        params = [{"params": ps, "lr": lr, "weight_decay": wd} for ps, lr, wd in groups if ps and lr > 0.0]
        try:  # the fused kernel is ~10x faster than foreach on CPU for many small tables
            return torch.optim.AdamW(params, fused=True)
        except (RuntimeError, ValueError):
            return torch.optim.AdamW(params)

    def fit(self, model: RankerNet, train: CTRData, valid: CTRData | None = None) -> CTRFitResult:
        cfg = self.config
        _check_inputs(model, train, "training")
        if valid is not None:
            _check_inputs(model, valid, "validation")
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        model.to(cfg.device)
        optimizer = self._optimizer(model)
        loss_fn = nn.BCEWithLogitsLoss()
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        eval_every = cfg.eval_every or steps_per_epoch
        best = {"auc": -math.inf, "logloss": math.inf}
        chosen: dict[str, float] = {"auc": math.nan, "logloss": math.nan, "step": 0}
        best_state = None
        history: list[dict[str, float]] = []
        stale, step, started, cpu_started = 0, 0, time.perf_counter(), time.process_time()
        stop = False
        cap = math.inf  # restored checkpoints' calibrated validation logloss is at most this
        eval_clock = [0.0, 0.0]  # wall and CPU seconds spent validating (taken out of the epoch times)

        def validate(epoch: int, running: float) -> bool:
            """Record a validation; True when neither metric has improved for more than ``patience`` checks."""
            nonlocal stale, best_state, cap
            assert valid is not None and valid.label is not None
            wall0, cpu0 = time.perf_counter(), time.process_time()
            probs = predict_ranker(model, valid, batch_size=cfg.eval_batch_size)
            metrics = ctr_metrics(valid.label, probs)
            model.train()
            record = {"step": step, "epoch": epoch + 1, "train_loss": running,
                      "valid_auc": metrics["auc"], "valid_logloss": metrics["logloss"]}  # fmt: skip
            eligible = True
            if cfg.logloss_cap_at_start:
                if step == 0:
                    cap = metrics["logloss"]
                record["valid_logloss_calibrated"] = calibrated = platt_scaling(probs, valid.label)[2]
                eligible = calibrated <= cap
            better_auc, better_ll = metrics["auc"] > best["auc"], metrics["logloss"] < best["logloss"]
            best["auc"], best["logloss"] = max(best["auc"], metrics["auc"]), min(best["logloss"], metrics["logloss"])
            selected = metrics["auc"] > chosen["auc"] if cfg.select == "auc" else metrics["logloss"] < chosen["logloss"]
            if eligible and (best_state is None or selected):
                chosen.update(auc=metrics["auc"], logloss=metrics["logloss"], step=step)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            stale = 0 if (better_auc or better_ll) else stale + 1
            eval_clock[0] += time.perf_counter() - wall0
            eval_clock[1] += time.process_time() - cpu0
            record.update(elapsed=time.perf_counter() - started, cpu_elapsed=time.process_time() - cpu_started)
            history.append(record)
            return stale > cfg.patience

        epoch_rows: list[int] = []
        epoch_seconds: list[float] = []
        epoch_cpu_seconds: list[float] = []
        if valid is not None and cfg.logloss_cap_at_start:
            validate(-1, math.nan)  # the start: a warm-started net's LR-equivalent checkpoint

        smoke = smoke_seconds()  # TURBOREC_SMOKE caps training (docs smoke test)
        for epoch in range(cfg.epochs):
            model.train()
            bar = progress_bar(cfg.progress, total=steps_per_epoch, desc=f"epoch {epoch + 1}", leave=False)
            epoch_start, epoch_cpu = time.perf_counter(), time.process_time()
            eval_clock[:] = [0.0, 0.0]
            epoch_step0 = step
            running = 0.0
            for dense, sparse, label in _batches(train, rng.permutation(len(train)), cfg.batch_size, cfg.device):
                logits = model(dense, sparse)
                loss = loss_fn(logits, label)
                if cfg.embedding_l2:
                    loss = loss + cfg.embedding_l2 * model.embedding_l2(sparse)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                value = float(loss.detach())
                running = 0.98 * running + 0.02 * value if step > 1 else value
                bar.update(1)
                bar.set_postfix(loss=f"{running:.4f}")
                if valid is not None and step % eval_every == 0 and validate(epoch, running):
                    stop = True
                    break
                if smoke is not None and time.perf_counter() - started > smoke:
                    stop = True
                    break
            bar.close()
            epoch_rows.append(min((step - epoch_step0) * cfg.batch_size, len(train)))
            epoch_seconds.append(time.perf_counter() - epoch_start - eval_clock[0])
            epoch_cpu_seconds.append(time.process_time() - epoch_cpu - eval_clock[1])
            last_auc = f" valid_auc {history[-1]['valid_auc']:.4f}" if history and "valid_auc" in history[-1] else ""
            log_line(cfg.progress, f"epoch {epoch + 1}/{cfg.epochs} loss {running:.4f}{last_auc} "
                                   f"({time.perf_counter() - epoch_start:.1f}s)")
            trained_checks = [h for h in history if h["step"] > 0]
            if valid is not None and not trained_checks and epoch == cfg.epochs - 1:  # eval_every > all steps
                validate(epoch, running)
            if valid is None:
                history.append({"step": step, "epoch": epoch + 1, "train_loss": running})
            if stop:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        return CTRFitResult(
            best_valid_auc=chosen["auc"] if valid is not None else math.nan,
            best_step=int(chosen["step"]) if valid is not None else step,
            steps=step,
            seconds=time.perf_counter() - started,
            history=history,
            best_valid_logloss=chosen["logloss"] if valid is not None else math.nan,
            epoch_rows=epoch_rows,
            epoch_seconds=epoch_seconds,
            epoch_cpu_seconds=epoch_cpu_seconds,
            cpu_seconds=time.process_time() - cpu_started,
        )


def calibrate_ranker(model: RankerNet, valid: CTRData, *, batch_size: int = 8192) -> tuple[float, float]:
    """Platt scaling on validation rows: set ``model.calibration`` to the (scale > 0, shift) on top of its
    current one that minimises validation logloss (ranking, hence AUC, unchanged); returns it."""
    _check_inputs(model, valid, "calibration")
    assert valid.label is not None
    with torch.no_grad():
        model.calibration.copy_(torch.tensor([1.0, 0.0]))
    scale, shift, _ = platt_scaling(predict_ranker(model, valid, batch_size=batch_size), valid.label)
    with torch.no_grad():
        model.calibration.copy_(torch.tensor([scale, shift]))
    return scale, shift


def platt_scaling(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """``(scale > 0, shift, logloss)``: the Platt scaling of the logits of ``probs`` that minimises the logloss
    on ``labels``, and that logloss; ``(1, 0, unscaled logloss)`` when scaling does not lower it."""
    from scipy.optimize import minimize

    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    z, y = np.log(p / (1 - p)), labels.astype(np.float64)

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        t = ab[0] * z + ab[1]
        q = 1.0 / (1.0 + np.exp(-t))
        value = float(np.mean(np.logaddexp(0.0, t) - y * t))
        g = q - y
        return value, np.array([np.mean(g * z), np.mean(g)])

    unscaled = loss(np.array([1.0, 0.0]))[0]
    res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(1e-3, None), (None, None)])
    if res.success and float(res.fun) < unscaled:
        return float(res.x[0]), float(res.x[1]), float(res.fun)
    return 1.0, 0.0, unscaled


def fit_ranker(
    model: RankerNet, train: CTRData, valid: CTRData | None = None, config: CTRTrainConfig | None = None
) -> CTRFitResult:
    """Train ``model`` in place (best validation weights restored) and return the fit history."""
    return CTRTrainer(config).fit(model, train, valid)


def save_ranker(
    path: str | os.PathLike[str],
    model: RankerNet,
    *,
    encoder: CTREncoder | None = None,
    metrics: dict[str, float] | None = None,
    train_config: CTRTrainConfig | None = None,
    transforms: Sequence[Mapping[str, Any]] = (),
    split: Mapping[str, Any] | None = None,
    train_rows: np.ndarray | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write a "ranker" artifact (atomic, checksummed, no pickle).

    ``transforms``: records of the compression transforms applied to ``model`` (turborec.compress),
    replayed on load through ``load_ranker(path, hooks)``. ``split``: how the training rows were cut
    (seed, ratios, rows), so evaluation can re-create it; ``train_rows``: uint64 fingerprints of the
    training rows (``turborec.data.ctr.row_fingerprints``), so evaluation can refuse to score them.
    """
    if not model.kind:
        raise ConfigError(f"{type(model).__name__} is not registered with @register_net, so it cannot be reloaded")
    config: dict[str, Any] = {
        "net": model.kind,
        "net_config": model.config.to_dict(),
        "cardinalities": list(model.cardinalities),
        "n_dense": model.n_dense,
        "embeddings": model.embedding_plan.to_dict(),
        "encoder": ENCODER_FILE if encoder is not None else None,
    }
    if train_config is not None:
        config["train"] = asdict(train_config)
    if transforms:
        config["transforms"] = [dict(t) for t in transforms]
    if split is not None:
        config["split"] = dict(split)
    config.update(extra_config or {})
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    json_files = {ENCODER_FILE: encoder.to_json()} if encoder is not None else None
    extra = None
    if train_rows is not None:
        rows = np.ascontiguousarray(np.sort(np.asarray(train_rows, dtype=np.uint64)))
        config["train_rows"] = TRAIN_ROWS_FILE

        def extra(folder: Path) -> None:
            from safetensors.numpy import save_file

            save_file({"fingerprints": rows}, str(folder / TRAIN_ROWS_FILE))

    return save_artifact(path, kind=RANKER_KIND, config=config, tensors=state, json_files=json_files,
                         metrics=metrics, extra=extra)  # fmt: skip


@dataclass
class LoadedRanker:
    """A ranker rebuilt from its artifact, with the encoder it was trained with (if saved)."""

    model: RankerNet
    encoder: CTREncoder | None
    metrics: dict[str, Any]
    path: Path
    split: dict[str, Any] | None = None  # seed, ratios and row count of the training split
    train_rows: np.ndarray | None = None  # sorted uint64 fingerprints of the training rows

    def overlap(self, fingerprints: np.ndarray) -> int:
        """How many of the given row fingerprints are training rows (0 when the artifact kept none)."""
        if self.train_rows is None or not len(fingerprints):
            return 0
        pos = np.searchsorted(self.train_rows, fingerprints)
        pos = np.minimum(pos, len(self.train_rows) - 1)
        return int((self.train_rows[pos] == fingerprints).sum()) if len(self.train_rows) else 0

    def predict(self, rows: RawCTR | CTRData, *, batch_size: int = 8192) -> np.ndarray:
        """Click probabilities float32 [N]; raw rows are encoded first (unseen categories -> OOV row)."""
        if isinstance(rows, RawCTR):
            if self.encoder is None:
                raise ConfigError(f"{self.path}: the artifact has no encoder; pass encoded CTRData rows")
            rows = self.encoder.transform(rows)
        return predict_ranker(self.model, rows, batch_size=batch_size)


def load_ranker(path: str | os.PathLike[str], hooks: LoadHooks | None = None) -> LoadedRanker:
    """Rebuild the ranker (in eval mode) and its encoder from an artifact written by :func:`save_ranker`.

    A compressed ranker's transforms are replayed by ``hooks`` (use turborec.load).
    """
    art = load_artifact(path, kinds=[RANKER_KIND])
    cfg = art.config
    records = list(cfg.get("transforms", []))
    if records and hooks is None:
        raise ArtifactError(
            f"{art.path}: this model was compressed ({', '.join(str(r.get('transform')) for r in records)}); "
            "load it with turborec.load"
        )
    try:
        model = build_ranker(
            str(cfg["net"]),
            cfg["net_config"],
            cardinalities=[int(c) for c in cfg["cardinalities"]],
            n_dense=int(cfg["n_dense"]),
            embeddings=EmbeddingPlan.from_dict(cfg.get("embeddings")),
        )
        if hooks is not None:
            hooks.prepare(model, records)
        tensors = art.torch_tensors()
        tensors.setdefault("calibration", model.calibration.clone())  # artifacts written before calibration
        model.load_state_dict(tensors, strict=True)
        if hooks is not None:
            hooks.finish(model, records)
        encoder = CTREncoder.from_json(art.json(cfg["encoder"])) if cfg.get("encoder") else None
    except (KeyError, TypeError, RuntimeError, TurborecError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(f"{art.path}: cannot rebuild the ranker ({exc})") from exc
    model.eval()
    train_rows = None
    if cfg.get("train_rows"):
        train_rows = art.numpy_tensors(str(cfg["train_rows"])).get("fingerprints")
    return LoadedRanker(model=model, encoder=encoder, metrics=art.metrics, path=art.path,
                        split=cfg.get("split"), train_rows=train_rows)  # fmt: skip


__all__ = [
    "CTRFitResult",
    "CTRTrainConfig",
    "CTRTrainer",
    "LoadedRanker",
    "calibrate_ranker",
    "evaluate_ranker",
    "fit_ranker",
    "load_ranker",
    "platt_scaling",
    "predict_ranker",
    "save_ranker",
]
