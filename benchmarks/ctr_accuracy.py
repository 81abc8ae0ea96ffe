"""CTR ranking accuracy: logistic regression vs DLRM vs DCN-V2 vs DeepFM on real samples, and
DCN-V2 against the generating model's own AUC on synthetic click logs.

    python benchmarks/ctr_accuracy.py            # full: 5 seeds, synthetic 1M rows (~6 min on 2 cores)
    python benchmarks/ctr_accuracy.py --quick    # smoke: 2 seeds, synthetic 200k rows

Real data (../shared/data): the Criteo 10k sample and the 9,999-row Avazu sample (its two
files concatenated). Each seed shuffles the rows, splits 8:1:1, fits the encoder on the
training part only, trains every model with early stopping on validation AUC, and scores the
test part. We report the mean test AUC over seeds with a 95% t-interval, and the paired
difference to logistic regression (same splits, so split noise cancels).

DLRM and DCN-V2 carry a first-order ("wide") term and are warm-started from that seed's fitted
logistic regression (``warm_start_wide``: LR weights copied into the wide term, output layer
zeroed, so training starts at LR's logit and the deep part learns what it adds); ``wide_lr``
keeps the copied weights (nearly) fixed. Their fit time includes the LR fit. Without the warm
start, jointly trained wide-and-deep nets stayed below LR on validation.

Hyper-parameters were chosen per dataset and model by mean validation AUC over seeds 0-4
(test AUC was not used to choose): ~60 configurations in an earlier sweep, then ~190 warm-started
DLRM / DCN-V2 configurations (random search and neighbours of the best) and 24 logistic
regression variants (validation every 8 steps, patience 8, won for LR as well). The five best
per dataset and model were then re-ranked on 15 validation sets: the 5 seeds' own, plus two
fresh 8:1 re-splits of each seed's train+valid rows (its test rows never enter).

Synthetic: ``SyntheticCTRConfig(n_rows=1_000_000, vocab_sizes=SYNTHETIC_VOCAB)`` (8 categorical
features of 10-500 values, 4 dense, a factorization-machine click model), split 8:1:1; the
ceiling is the AUC of the true click probabilities on the test rows.

Writes benchmarks/results/ctr_accuracy.json and ctr_accuracy.md and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from turborec.data.ctr import CTREncoder, RawCTR, SyntheticCTRConfig, read_avazu, read_criteo, shuffle_split
from turborec.data.ctr.synthetic import SyntheticClickModel, synthetic_ctr
from turborec.metrics.ctr import auc
from turborec.models.rankers import LogisticRegression, build_ranker, warm_start_wide
from turborec.train.ctr import CTRTrainConfig, evaluate_ranker, fit_ranker

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("logreg", "dlrm", "dcnv2", "deepfm")
# smaller than the generator's default (up to 2000 values): 1M rows then show nearly every value
# >= 100 times, so the ceiling is reachable; with the default, DCN-V2 stays 0.017 below it (DeepFM 0.013)
SYNTHETIC_VOCAB = (10, 20, 50, 100, 200, 300, 500, 10)
# kinds warm-started from the same seed's logistic regression when their config has wide=True
WARM_STARTED = ("dlrm", "dcnv2")


def _train(**kw: Any) -> CTRTrainConfig:
    base: dict[str, Any] = dict(epochs=40, patience=2, batch_size=256, lr=1e-3, embedding_l2=1e-3, weight_decay=0.01)
    return CTRTrainConfig(**{**base, **kw, "progress": False})


# per dataset: encoder options and (net config, train config) per model
SETUPS: dict[str, dict[str, Any]] = {
    "criteo": {
        "encoder": dict(min_freq=10, standardize=True),
        "models": {
            "logreg": ({}, _train(lr=3e-3, batch_size=128, weight_decay=0.0, eval_every=8, patience=8)),
            "dlrm": (dict(embedding_dim=16, bottom_mlp=(64,), top_mlp=(32,), dropout=0.5, wide=True),
                     _train(lr=1e-2, embedding_lr=0.1, embedding_l2=1e-2, weight_decay=0.1, batch_size=512, wide_lr=0.0, eval_every=8, patience=8)),
            "dcnv2": (dict(embedding_dim=16, n_cross=1, deep=(128, 64), structure="stacked", dropout=0.0, wide=True),
                      _train(lr=5e-3, embedding_lr=0.1, embedding_l2=1e-2, weight_decay=0.1, batch_size=256, wide_lr=1e-4, eval_every=8, patience=8)),
            "deepfm": (dict(embedding_dim=8, deep=(64, 32), dropout=0.0), _train(batch_size=512)),
        },
    },
    "avazu": {
        "encoder": dict(min_freq=2, standardize=True),
        "models": {
            "logreg": ({}, _train(lr=1e-2, eval_every=8, patience=8)),
            "dlrm": (dict(embedding_dim=32, bottom_mlp=(), top_mlp=(256, 128), dropout=0.2, wide=True),
                     _train(lr=3e-3, embedding_lr=0.03, embedding_l2=1e-4, weight_decay=0.01, batch_size=128, wide_lr=0.0, eval_every=8, patience=8)),
            "dcnv2": (dict(embedding_dim=16, n_cross=1, deep=(64,), structure="stacked", dropout=0.2, wide=True),
                      _train(lr=1e-2, embedding_lr=0.1, embedding_l2=1e-4, weight_decay=0.01, batch_size=128, wide_lr=0.0, eval_every=8, patience=8)),
            "deepfm": (dict(embedding_dim=8, deep=(64, 32), dropout=0.5), _train(embedding_l2=1e-2, weight_decay=0.1)),
        },
    },
}  # fmt: skip


def load_dataset(name: str) -> RawCTR:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both samples are documented duplicate-free
        if name == "criteo":
            return read_criteo(DATA / "criteo-sample-10k" / "wideresdnn_criteo_train_sample.txt.gz")
        folder = DATA / "avazu-sample-9999"
        return RawCTR.concat(
            [
                read_avazu(folder / "wideresdnn_avazu_train.csv.gz"),
                read_avazu(folder / "wideresdnn_avazu_test.csv", header=None),
            ]
        )


def interval(values: list[float]) -> dict[str, float]:
    """Mean with a 95% Student-t interval (half-width)."""
    n = len(values)
    mean = float(np.mean(values))
    half = float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "ci95": half, "n": n}


def run_real(name: str, seeds: int) -> dict[str, Any]:
    raw = load_dataset(name)
    setup = SETUPS[name]
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODELS}
    for seed in range(seeds):
        train_raw, valid_raw, test_raw = shuffle_split(raw, (0.8, 0.1, 0.1), seed=seed)
        encoder = CTREncoder(**setup["encoder"]).fit(train_raw)
        train, valid, test = (encoder.transform(r) for r in (train_raw, valid_raw, test_raw))
        logreg: LogisticRegression | None = None
        logreg_seconds = 0.0
        for kind in MODELS:  # logreg first: the wide-and-deep nets start from it
            net_config, train_config = setup["models"][kind]
            torch.manual_seed(seed)
            model = build_ranker(kind, net_config, cardinalities=train.cardinalities, n_dense=train.n_dense)
            warm = kind in WARM_STARTED and net_config.get("wide", False)
            if warm:
                assert logreg is not None
                warm_start_wide(model, logreg)
            fit = fit_ranker(model, train, valid, CTRTrainConfig(**{**asdict(train_config), "seed": seed}))
            seconds = fit.seconds + (logreg_seconds if warm else 0.0)
            if isinstance(model, LogisticRegression):
                logreg, logreg_seconds = model, fit.seconds
            metrics = evaluate_ranker(model, test)
            runs[kind].append({**metrics, "valid_auc": fit.best_valid_auc, "seconds": seconds, "steps": fit.steps,
                               "warm_started": warm})  # fmt: skip
            print(f"  {name} seed {seed} {kind:7s} test auc {metrics['auc']:.4f} ({seconds:.1f}s)", flush=True)
    lr_auc = [r["auc"] for r in runs["logreg"]]
    summary = {}
    for kind in MODELS:
        aucs = [r["auc"] for r in runs[kind]]
        summary[kind] = {
            "test_auc": interval(aucs),
            "diff_vs_logreg": interval([a - b for a, b in zip(aucs, lr_auc)]),
            "test_logloss": float(np.mean([r["logloss"] for r in runs[kind]])),
            "calibration": float(np.mean([r["calibration"] for r in runs[kind]])),
            "valid_auc": float(np.mean([r["valid_auc"] for r in runs[kind]])),
            "median_fit_seconds": statistics.median(r["seconds"] for r in runs[kind]),
            "config": setup["models"][kind][0],
            "train": asdict(setup["models"][kind][1]),
        }
    return {"rows": len(raw), "positive_rate": float(raw.label.mean()) if raw.label is not None else None,
            "encoder": setup["encoder"], "seeds": seeds, "summary": summary, "runs": runs}  # fmt: skip


def run_synthetic(n_rows: int) -> dict[str, Any]:
    config = SyntheticCTRConfig(n_rows=n_rows, vocab_sizes=SYNTHETIC_VOCAB, seed=0)
    started = time.perf_counter()
    data = synthetic_ctr(config).data
    generate_s = time.perf_counter() - started
    train, valid, test = shuffle_split(data, (0.8, 0.1, 0.1), seed=0)
    assert test.label is not None
    ceiling = auc(test.label, SyntheticClickModel(config).prob(test.dense, test.sparse))
    out: dict[str, Any] = {
        "rows": n_rows,
        "generate_seconds": generate_s,
        "generating_model_auc": ceiling,
        "models": {},
        "config": asdict(config),
    }
    setups = {
        "logreg": ({}, _train(lr=1e-2, batch_size=4096, embedding_l2=0.0, weight_decay=0.0, epochs=8, patience=1)),
        "dcnv2": (dict(embedding_dim=8, n_cross=3, deep=(64, 32)), _train(lr=2e-3, batch_size=2048, embedding_l2=0.0, weight_decay=0.0, epochs=10, patience=1)),
    }  # fmt: skip
    for kind, (net_config, train_config) in setups.items():
        torch.manual_seed(0)
        model = build_ranker(kind, net_config, cardinalities=train.cardinalities, n_dense=train.n_dense)
        fit = fit_ranker(model, train, valid, train_config)
        metrics = evaluate_ranker(model, test)
        out["models"][kind] = {**metrics, "gap_to_generating_model": ceiling - metrics["auc"], "seconds": fit.seconds,
                               "epochs_run": fit.history[-1]["epoch"] if fit.history else 0, "config": net_config,
                               "train": asdict(train_config)}  # fmt: skip
        print(
            f"  synthetic {kind}: test auc {metrics['auc']:.4f} vs ceiling {ceiling:.4f} ({fit.seconds:.0f}s)",
            flush=True,
        )
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = []
    for name in ("criteo", "avazu"):
        if name not in result:
            continue
        r = result[name]
        lines += [f"### {name}: {r['rows']:,} rows, {r['positive_rate']:.1%} clicks, 8:1:1 shuffled, {r['seeds']} seeds",
                  "", "| model | test AUC (mean ± 95% CI) | Δ vs LR (paired, ± 95% CI) | logloss | calibration | valid AUC | fit s (median) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for kind in MODELS:
            s = r["summary"][kind]
            diff = (
                "—" if kind == "logreg" else f"{s['diff_vs_logreg']['mean']:+.4f} ± {s['diff_vs_logreg']['ci95']:.4f}"
            )
            lines.append(
                f"| {kind} | {s['test_auc']['mean']:.4f} ± {s['test_auc']['ci95']:.4f} | {diff} | "
                f"{s['test_logloss']:.4f} | {s['calibration']:.3f} | {s['valid_auc']:.4f} | {s['median_fit_seconds']:.1f} |"
            )
        warm = [k for k in MODELS if any(run.get("warm_started") for run in r["runs"][k])]
        if warm:
            lines += ["", f"{' and '.join(warm)}: wide-and-deep, warm-started from the seed's logistic regression "
                      "(fit time includes it). Valid AUC: best early-stopping checkpoint, mean over seeds."]  # fmt: skip
        lines.append("")
    if "synthetic" in result:
        s = result["synthetic"]
        lines += [f"### synthetic: {s['rows']:,} rows (FM click model), generating model's test AUC {s['generating_model_auc']:.4f}",
                  "", "| model | test AUC | gap to generating model | calibration | fit s |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for kind, m in s["models"].items():
            lines.append(
                f"| {kind} | {m['auc']:.4f} | {m['gap_to_generating_model']:.4f} | {m['calibration']:.3f} | {m['seconds']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--synthetic-rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=1)  # accuracy does not depend on it; 1 avoids oversubscription
    parser.add_argument("--out", type=Path, default=RESULTS / "ctr_accuracy.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = 2 if args.quick else args.seeds
    rows = 200_000 if args.quick else args.synthetic_rows
    started = time.perf_counter()
    result: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads}
    }
    for name in ("criteo", "avazu"):
        result[name] = run_real(name, seeds)
    result["synthetic"] = run_synthetic(rows)
    result["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))
    table = markdown(result)
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
