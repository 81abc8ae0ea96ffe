"""CTR ranking accuracy: logistic regression vs FM, DLRM, DCN-V2 and DeepFM on real samples and on
synthetic click logs with known pairwise interactions, trained by the CLI's own recipe.

    python benchmarks/ctr_accuracy.py                       # 5 seeds real, 3 seeds x 300k rows synthetic
    python benchmarks/ctr_accuracy.py --quick               # smoke: 2 seeds, synthetic 100k rows
    python benchmarks/ctr_accuracy.py --only synthetic --models logreg dcnv2 dcnv2:low_rank=0,n_cross=3
                                                            # model[:options] on top of the preset (--param's)

Every model is trained by ``turborec.train.ctr_recipe.train_ctr`` with the preset that
``turborec train --task ctr`` uses for the format (criteo, avazu), so the CLI trains what this
table reports: per seed the rows are shuffled and split 8:1:1, the encoder is fitted on the
training part only, logistic regression (LR) is fitted first, FM, DeepFM and the wide-and-deep DLRM /
DCN-V2 start at its logits (``warm_start_from_logreg``; their fit time includes LR's), every model
early-stops on validation AUC and logloss (a warm-started one keeps its LR-equivalent start unless
training beats its calibrated validation logloss), and the non-LR models are Platt-calibrated on the
validation rows when that lowers their validation logloss. One torch thread (``--threads``).

Real data (../shared/data): the Criteo 10k sample and the 9,999-row Avazu sample (its two files
concatenated). Synthetic: ``SyntheticCTRConfig(vocab_sizes=SYNTHETIC_VOCAB)`` (8 categorical
features of 10-500 values, 4 dense, a factorization-machine click model), one generator per
seed; the ceiling is the AUC of the true click probabilities on the test rows.

Reported per model: test AUC and logloss as mean ± 95% t-interval over seeds, the paired
difference to LR (same splits) as median and 95% t-interval, the validation AUC and logloss
(medians over seeds: what a choice between settings may look at), and whether the validation
logloss ended at or below LR's. Hyper-parameters (train/ctr_recipe.PRESETS) were chosen on validation AUC
only.

Writes benchmarks/results/ctr_accuracy.json and ctr_accuracy.md and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from _common import parse_spec
from turborec.data.ctr import RawCTR, SyntheticCTRConfig, read_avazu, read_criteo, shuffle_split
from turborec.data.ctr.synthetic import SyntheticClickModel, synthetic_ctr
from turborec.metrics.ctr import auc
from turborec.train.ctr_recipe import PRESETS, ctr_recipe, train_ctr

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("logreg", "fm", "dlrm", "dcnv2", "deepfm")
# smaller than the generator's default (up to 2000 values), so the ceiling is reachable with ~1M rows
SYNTHETIC_VOCAB = (10, 20, 50, 100, 200, 300, 500, 10)


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
    """Mean and median with a 95% Student-t interval (half-width) of the mean."""
    n = len(values)
    mean = float(np.mean(values))
    half = float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "median": float(np.median(values)), "ci95": half, "n": n}


def summarise(runs: dict[str, list[dict[str, Any]]], preset: str) -> dict[str, Any]:
    lr_auc = [r["auc"] for r in runs["logreg"]]
    lr_ll = [r["logloss"] for r in runs["logreg"]]
    summary = {}
    for spec in runs:
        kind, options = parse_spec(spec)
        aucs, lls = [r["auc"] for r in runs[spec]], [r["logloss"] for r in runs[spec]]
        summary[spec] = {
            "test_auc": interval(aucs),
            "test_logloss": interval(lls),
            "diff_vs_logreg": interval([a - b for a, b in zip(aucs, lr_auc)]),
            "logloss_diff_vs_logreg": interval([a - b for a, b in zip(lls, lr_ll)]),
            "calibration": float(np.mean([r["calibration"] for r in runs[spec]])),
            "valid_auc": float(np.mean([r["valid_auc"] for r in runs[spec]])),
            "valid_auc_median": statistics.median(r["valid_auc"] for r in runs[spec]),
            "valid_logloss_median": statistics.median(r["valid_logloss"] for r in runs[spec]),
            "valid_logloss_below_logreg": [r.get("valid_logloss_below_logreg") for r in runs[spec]],
            "median_fit_seconds": statistics.median(r["fit_seconds"] for r in runs[spec]),
            "config": {**PRESETS[preset]["models"][kind][0], **options},
            "train": PRESETS[preset]["models"][kind][1],
        }
    return summary


def _fit_all(raw: RawCTR, preset: str, seed: int, label: str, runs: dict[str, list[dict[str, Any]]]) -> None:
    for spec in runs:
        kind, options = parse_spec(spec)
        run = train_ctr(raw, ctr_recipe(kind, preset, options, seed=seed))
        keep = ("auc", "logloss", "calibration", "valid_auc", "valid_logloss", "fit_seconds", "steps",
                "warm_started", "valid_logloss_below_logreg", "logreg_valid_logloss")  # fmt: skip
        runs[spec].append({k: run.metrics[k] for k in keep if k in run.metrics})
        print(f"  {label} seed {seed} {spec:7s} test auc {run.metrics['auc']:.4f} logloss "
              f"{run.metrics['logloss']:.4f} ({run.metrics['fit_seconds']:.1f}s)", flush=True)  # fmt: skip


def run_real(name: str, seeds: int, models: list[str]) -> dict[str, Any]:
    raw = load_dataset(name)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    for seed in range(seeds):
        _fit_all(raw, name, seed, name, runs)
    return {"rows": len(raw), "positive_rate": float(raw.label.mean()) if raw.label is not None else None,
            "encoder": PRESETS[name]["encoder"], "seeds": seeds, "summary": summarise(runs, name), "runs": runs}  # fmt: skip


def synthetic_raw(config: SyntheticCTRConfig) -> tuple[RawCTR, float]:
    """The generator's rows as raw columns (values as text, as a file would hold them) and the ceiling:
    the true probabilities' AUC on the test part of the seed-0-style split used by the recipe."""
    generated = synthetic_ctr(config)
    raw, data = generated.raw(f"synthetic seed {config.seed}"), generated.data
    test = shuffle_split(data, (0.8, 0.1, 0.1), seed=config.seed)[2]
    assert test.label is not None
    return raw, auc(test.label, SyntheticClickModel(config).prob(test.dense, test.sparse))


def run_synthetic(n_rows: int, seeds: int, models: list[str]) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    ceilings = []
    for seed in range(seeds):
        raw, ceiling = synthetic_raw(SyntheticCTRConfig(n_rows=n_rows, vocab_sizes=SYNTHETIC_VOCAB, seed=seed))
        ceilings.append(ceiling)
        _fit_all(raw, "synthetic", seed, "synthetic", runs)
    return {"rows": n_rows, "seeds": seeds, "generating_model_auc": interval(ceilings),
            "summary": summarise(runs, "synthetic"), "runs": runs}  # fmt: skip


def _table(r: dict[str, Any]) -> list[str]:
    lines = ["| model | test AUC (mean ± 95% CI) | Δ AUC vs LR (median; mean ± 95% CI) | test logloss | Δ logloss vs LR "
             "(median) | valid AUC / logloss (median) | valid logloss <= LR | calibration | fit s (median) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for kind, s in r["summary"].items():
        d, dl = s["diff_vs_logreg"], s["logloss_diff_vs_logreg"]
        diff = "—" if kind == "logreg" else f"{d['median']:+.4f}; {d['mean']:+.4f} ± {d['ci95']:.4f}"
        ll_diff = "—" if kind == "logreg" else f"{dl['median']:+.4f}"
        below = s["valid_logloss_below_logreg"]
        below_text = "—" if kind == "logreg" else f"{sum(bool(b) for b in below)}/{len(below)} seeds"
        lines.append(
            f"| {kind} | {s['test_auc']['mean']:.4f} ± {s['test_auc']['ci95']:.4f} | {diff} | "
            f"{s['test_logloss']['mean']:.4f} | {ll_diff} | {s['valid_auc_median']:.4f} / {s['valid_logloss_median']:.4f} | "
            f"{below_text} | {s['calibration']:.3f} | "
            f"{s['median_fit_seconds']:.1f} |"
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    lines: list[str] = []
    for name in ("criteo", "avazu"):
        if name in result:
            r = result[name]
            lines += [f"### {name}: {r['rows']:,} rows, {r['positive_rate']:.1%} clicks, 8:1:1 shuffled, {r['seeds']} seeds",
                      "", *_table(r), ""]  # fmt: skip
    if "synthetic" in result:
        s = result["synthetic"]
        c = s["generating_model_auc"]
        lines += [f"### synthetic: {s['rows']:,} rows per seed (FM click model), {s['seeds']} seeds; generating model's "
                  f"test AUC {c['mean']:.4f} ± {c['ci95']:.4f}", "", *_table(s), ""]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--synthetic-seeds", type=int, default=3)
    parser.add_argument("--synthetic-rows", type=int, default=300_000)
    parser.add_argument("--threads", type=int, default=1)  # accuracy does not depend on it; 1 avoids oversubscription
    parser.add_argument("--only", choices=("criteo", "avazu", "synthetic"), action="append")
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        metavar="MODEL[:K=V,...]",
        help="rankers, each with optional preset overrides (logreg is always fitted: the baseline)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "ctr_accuracy.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = 2 if args.quick else args.seeds
    rows = 100_000 if args.quick else args.synthetic_rows
    started = time.perf_counter()
    result: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads}
    }
    parts = args.only or ["criteo", "avazu", "synthetic"]
    models = list(dict.fromkeys(["logreg", *args.models]))  # the paired differences need LR on the same splits
    for spec in models:
        kind, options = parse_spec(spec)
        ctr_recipe(kind, "synthetic", options)  # a bad kind or option fails here, before any fit
    for name in ("criteo", "avazu"):
        if name in parts:
            result[name] = run_real(name, seeds, models)
    if "synthetic" in parts:
        result["synthetic"] = run_synthetic(rows, 2 if args.quick else args.synthetic_seeds, models)
    result["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))
    table = markdown(result)
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
