"""Compression: smaller, faster models that keep their accuracy, measured against their teachers.

    python benchmarks/compression.py               # retrieval + rankers
    python benchmarks/compression.py --part retrieval --seeds 1

Retrieval: ml-latest-small with the recbole protocol (ratings >= 3, 10-core, random 8:1:1 per
user, seed 2020). The teacher is what ``turborec train --data ml-latest-small`` trains: the default
two-tower (its current defaults, training seed 2020 as the CLI's). Variants:
post-training table quantization (fp16 / int8 / int4), int8 dynamic MLPs, quantization-aware
int4 (3 epochs of fine-tuning with fake-quantized tables), pruned MLPs with fine-tuning, students
distilled from the teacher (KL over the teacher's top-50 + sampled candidates) and the same
students trained without the teacher (the control: same seed, same epochs and early stopping),
and combinations. Accuracy is test NDCG@10 (validation items excluded); every variant is saved
and measured from its artifact (weight bytes, artifact bytes, resident memory a fresh process
adds by loading it, median CPU time of ``score_users`` for 256 users on one thread).

Rankers: the Criteo 10k sample (5 shuffled 8:1:1 splits; DLRM with 64-wide embeddings as the
teacher) and synthetic click logs (200k rows; DCN-V2). Variants: int8 / int4 tables, int8 MLPs,
and students distilled by score matching against the same students trained on the labels only.
Accuracy is test AUC; latency is ``predict`` on 4,096 rows.

Trained teachers and students are cached under .cache/compression (keyed by their configs and
the training code; delete the folder to retrain after changing the distillation code), so the
first run takes ~30 minutes on 2 shared cores and later runs ~3.
Writes benchmarks/results/compression.json / .md and docs/img/compression_*.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from scipy import stats

from _common import REPO, SHARED_DATA, write_results
from turborec.compress import (
    DistillConfig,
    compress_estimator,
    compress_ranker,
    distill_ranker,
    distill_retrieval,
    load,
    save_ranker,
    student_estimator,
    student_ranker,
)
from turborec.compress.report import VariantReport, markdown_table, measure_variants, plot_reports
from turborec.data import apply_protocol, load_movielens
from turborec.errors import ArtifactError
from turborec.train import TwoTowerRecommender

CACHE = REPO / ".cache" / "compression"
IMG = REPO / "docs" / "img"
VARIANTS = REPO / ".cache" / "compression" / "variants"
TRAIN_CODE = ("src/turborec/train/estimators.py", "src/turborec/train/trainer.py", "src/turborec/models/two_tower.py",
              "src/turborec/train/ctr.py")  # fmt: skip
# chosen on validation against today's default teacher (per-user objective, dim 128), int4 tables +
# int8 MLPs, alpha 0.3: dim 16 / hidden 64 kept 74.5%, dim 32 / hidden 64 94.7%, dim 64 / hidden 128 99.4%
STUDENT = {"dim": 64, "hidden": (128,)}
SIZES = f"dim {STUDENT['dim']}, hidden {list(STUDENT['hidden'])}"  # type: ignore[call-overload]
TRAIN_SEED = 2020  # turborec train's default split and training seed
DISTILL = DistillConfig(top_k=50)  # the default alpha (0.3)


def code_digest() -> str:
    h = hashlib.sha256()
    for rel in TRAIN_CODE:
        h.update((REPO / rel).read_bytes())
    return h.hexdigest()[:10]


CODE = code_digest()  # read once: the modules this run imported, even if the files change meanwhile


def cache_path(name: str, key: Any) -> Path:
    digest = hashlib.sha256(json.dumps([key, CODE], sort_keys=True, default=str).encode()).hexdigest()[:12]
    return CACHE / f"{name}-{digest}"


def cached(name: str, key: Any, build: Callable[[Path], Path], loader: Callable[[Path], Any] = load) -> Any:
    """``loader(path)`` of the artifact cached for (name, key, training code); ``build(path)`` writes it on a miss."""
    path = cache_path(name, key)
    if path.exists():
        try:
            return loader(path)
        except ArtifactError:
            pass
    started = time.perf_counter()
    build(path)
    print(f"  trained {name} in {time.perf_counter() - started:.0f}s", flush=True)
    return loader(path)


def interval(values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = float(np.mean(values))
    half = float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "ci95": half, "n": n}


# ------------------------------------------------------------------ retrieval
def retrieval(seeds: int, repeats: int) -> dict[str, Any]:
    split = apply_protocol("recbole", load_movielens(SHARED_DATA / "ml-latest-small"), seed=2020)
    users = np.arange(256)

    def ndcg(est: Any, part: str = "test") -> float:
        if part == "valid":
            return float(est.evaluate(split.valid, ks=(10,))["ndcg@10"])
        return float(est.evaluate(split.test, exclude=[split.valid], ks=(10,))["ndcg@10"])

    def teacher_build(path: Path) -> Path:  # what `turborec train --data ml-latest-small` fits (seed 2020)
        return TwoTowerRecommender(progress=False, seed=TRAIN_SEED).fit(split.train, split.valid).save(path)

    teacher = cached("ml-teacher", {"seed": TRAIN_SEED}, teacher_build)

    def student(distilled: bool, seed: int) -> Any:
        key = {"sizes": STUDENT, "seed": seed, "distill": asdict(DISTILL) if distilled else None}
        name = "ml-distilled" if distilled else "ml-control"

        def build(path: Path) -> Path:
            est = student_estimator(teacher, **STUDENT)
            est.train_config = replace(est.train_config, seed=seed, progress=False)
            if distilled:
                est = distill_retrieval(teacher, est, split.train, split.valid, DISTILL)
            else:
                est.fit(split.train, split.valid)
            return est.save(path)

        return cached(name, key, build)

    # seed TRAIN_SEED first: the student `turborec compress --distill` trains (it keeps the teacher's seed)
    pairs = [(student(False, TRAIN_SEED + s), student(True, TRAIN_SEED + s)) for s in range(seeds)]
    control, distilled = pairs[0]
    tune = {"train": split.train, "valid": split.valid}
    variants: list[tuple[str, Any, str]] = [
        ("teacher", teacher, f"two-tower dim {teacher.config.dim}, hidden {list(teacher.config.hidden)}"),
        ("fp16", compress_estimator(teacher, quantize="fp16"), "post-training"),
        ("int8", compress_estimator(teacher, quantize="int8"), "post-training"),
        ("int4", compress_estimator(teacher, quantize="int4"), "post-training"),
        ("int4 QAT", compress_estimator(teacher, quantize="int4", finetune_epochs=3, **tune), "3 epochs fake-quant"),
        ("int8+mlp8", compress_estimator(teacher, quantize="int8", quantize_mlp=True), "post-training"),
        ("prune0.5+ft+int8+mlp8", compress_estimator(teacher, quantize="int8", quantize_mlp=True, prune=0.5,
                                                     finetune_epochs=3, **tune), "3 epochs fine-tuning"),
        ("student control", control, f"{SIZES}, no teacher"),
        ("student distilled", distilled, f"{SIZES}, from teacher"),
        ("distilled+int8", compress_estimator(distilled, quantize="int8"), "post-training, float MLP"),
        ("distilled+int8+mlp8", compress_estimator(distilled, quantize="int8", quantize_mlp=True), "post-training"),
        ("distilled+int4+mlp8", compress_estimator(distilled, quantize="int4", quantize_mlp=True), "post-training"),
        ("distilled+int4 QAT+mlp8", compress_estimator(distilled, quantize="int4", quantize_mlp=True,
                                                       finetune_epochs=3, **tune), "3 epochs fake-quant"),
        ("distilled+prune0.5+ft+int4 QAT+mlp8", compress_estimator(distilled, quantize="int4", quantize_mlp=True,
                                                                   prune=0.5, finetune_epochs=3, **tune), ""),
    ]
    valid_scores = {name: ndcg(est, "valid") for name, est, _ in variants}
    paths = [(name, est.save(VARIANTS / "ml" / name.replace(" ", "_")), note) for name, est, note in variants]
    reports = measure_variants(paths, metric_name="NDCG@10", evaluate=ndcg, batch=lambda e: e.score_users(users),
                               rounds=repeats)
    for r in reports:
        print(f"  ml {r.name}: ndcg@10 {r.metric:.4f}  weights {r.model_bytes / 1024:.0f} KB  {r.latency_ms:.2f} ms")
    # what `turborec compress --distill dim=64 --distill hidden=128 --quantize int4` gives, per student seed
    small = [compress_estimator(d, quantize="int4", quantize_mlp=True) for _, d in pairs]
    students = {
        "control": [ndcg(c) for c, _ in pairs],
        "distilled": [ndcg(d) for _, d in pairs],
        "distilled_int4_mlp8": [ndcg(e) for e in small],
        "valid_control": [ndcg(c, "valid") for c, _ in pairs],
        "valid_distilled": [ndcg(d, "valid") for _, d in pairs],
        "valid_distilled_int4_mlp8": [ndcg(e, "valid") for e in small],
    }
    diffs = [d - c for c, d in zip(students["control"], students["distilled"])]
    valid_diffs = [d - c for c, d in zip(students["valid_control"], students["valid_distilled"])]
    return {
        "split": split.summary(),
        "student": {k: list(v) if isinstance(v, tuple) else v for k, v in STUDENT.items()},
        "distill": asdict(DISTILL),
        "valid_ndcg": valid_scores,
        "students": {"control": interval(students["control"]), "distilled": interval(students["distilled"]),
                     "distilled_int4_mlp8": interval(students["distilled_int4_mlp8"]),
                     "seeds": [TRAIN_SEED + s for s in range(seeds)],
                     "paired_diff": interval(diffs), "valid_paired_diff": interval(valid_diffs),
                     "wins": sum(x > 0 for x in diffs), "valid_wins": sum(x > 0 for x in valid_diffs), "runs": students},
        "variants": [{**asdict(r), "model_bytes": r.model_bytes} for r in reports],
        "_reports": reports,
    }


# ------------------------------------------------------------------ memory at scale
def scale(repeats: int) -> dict[str, Any]:
    """Resident memory where the tables dominate: a two-tower over 300k items (one epoch of training:
    the weights' values do not matter for memory). Latency here is the user tower for 256 users."""
    from turborec.data import synthetic

    data = synthetic(n_users=25_000, n_items=300_000, n_interactions=50_000, seed=0, min_user_interactions=2)

    def build(path: Path) -> Path:
        return TwoTowerRecommender(epochs=1, progress=False, seed=0).fit(data).save(path)

    model = cached("scale-two-tower", {"items": 300_000, "users": 25_000}, build)
    users = np.arange(256)
    variants = [("dense", model), ("fp16", compress_estimator(model, quantize="fp16")),
                ("int8", compress_estimator(model, quantize="int8")), ("int4", compress_estimator(model, quantize="int4")),
                ("int8+mlp8", compress_estimator(model, quantize="int8", quantize_mlp=True))]  # fmt: skip
    paths = [(name, est.save(VARIANTS / "scale" / name), "") for name, est in variants]
    reports = measure_variants(paths, metric_name="NDCG@10", evaluate=None, batch=lambda e: e.user_vectors(users),
                               rounds=repeats)
    for r in reports:
        print(f"  scale {r.name}: weights {r.model_bytes / 2**20:.1f} MB, RSS added {(r.rss_bytes or 0) / 2**20:.1f} MB")
    shutil.rmtree(VARIANTS / "scale", ignore_errors=True)  # ~500 MB of artifacts, measured and done
    return {"variants": [{**asdict(r), "model_bytes": r.model_bytes} for r in reports], "_reports": reports}


# ------------------------------------------------------------------ rankers
def criteo_splits(seeds: int) -> list[tuple[Any, Any, Any, Any]]:
    from turborec.data.ctr import CTREncoder, read_criteo, shuffle_split

    raw = read_criteo(SHARED_DATA / "criteo-sample-10k" / "wideresdnn_criteo_train_sample.txt.gz")
    out = []
    for seed in range(seeds):
        parts = shuffle_split(raw, (0.8, 0.1, 0.1), seed=seed)
        encoder = CTREncoder(min_freq=10, standardize=True).fit(parts[0])
        out.append((*(encoder.transform(p) for p in parts), encoder))
    return out


def synthetic_split() -> list[tuple[Any, Any, Any, Any]]:
    from turborec.data.ctr import SyntheticCTRConfig, shuffle_split
    from turborec.data.ctr.synthetic import synthetic_ctr

    data = synthetic_ctr(SyntheticCTRConfig(n_rows=200_000, seed=0)).data
    return [(*shuffle_split(data, (0.8, 0.1, 0.1), seed=0), None)]


RANKERS: dict[str, dict[str, Any]] = {
    "criteo": {
        "kind": "dlrm",
        "teacher": {"embedding_dim": 64, "bottom_mlp": (), "top_mlp": (32,), "dropout": 0.5, "wide": True},
        "student": {"embedding_dim": 8, "top_mlp": (16,)},
        "train": {"epochs": 40, "patience": 2, "batch_size": 512, "lr": 1e-3, "embedding_l2": 1e-3, "weight_decay": 0.1},
        "alpha": 0.5,
    },
    "synthetic": {
        "kind": "dcnv2",
        "teacher": {"embedding_dim": 64, "n_cross": 2, "deep": (128, 64)},
        "student": {"embedding_dim": 8, "deep": (32,)},
        "train": {"epochs": 8, "patience": 1, "batch_size": 4096, "lr": 2e-3},
        "alpha": 0.5,
    },
}  # fmt: skip


def rankers(name: str, splits_n: int, student_seeds: int, repeats: int) -> dict[str, Any]:
    """Teacher variants per split; students (control and distilled) per split and student seed."""
    from turborec.models.rankers import build_ranker
    from turborec.train.ctr import CTRTrainConfig, evaluate_ranker, fit_ranker, predict_ranker

    setup = RANKERS[name]
    splits = criteo_splits(splits_n) if name == "criteo" else synthetic_split()
    runs: dict[str, list[float]] = {}
    pairs: list[tuple[float, float]] = []
    reports: list[VariantReport] = []
    for split_seed, (train, valid, test, encoder) in enumerate(splits):

        def fit(model_config: dict[str, Any], seed: int, teacher: Any = None, train: Any = train, valid: Any = valid,
                encoder: Any = encoder, split_seed: int = split_seed) -> Any:
            config = CTRTrainConfig(**setup["train"], seed=seed, progress=False)
            key = {"data": name, "split": split_seed, "seed": seed, "config": model_config,
                   "teacher": teacher is not None, "alpha": setup["alpha"], "train": asdict(config)}
            label = f"{name}-{'distilled' if teacher is not None else 'trained'}"

            def build(dest: Path) -> Path:
                torch.manual_seed(seed)
                if teacher is None:
                    model = build_ranker(setup["kind"], model_config, cardinalities=train.cardinalities,
                                         n_dense=train.n_dense)
                    fit_ranker(model, train, valid, config)
                else:
                    model = student_ranker(teacher, **model_config)
                    distill_ranker(teacher, model, train, valid, config, alpha=setup["alpha"])
                return save_ranker(dest, model, encoder=encoder)

            return cached(label, key, build).model

        teacher = fit(setup["teacher"], split_seed)
        students = [(fit({**setup["teacher"], **setup["student"]}, split_seed + 100 * s),
                     fit(setup["student"], split_seed + 100 * s, teacher=teacher)) for s in range(student_seeds)]
        for control, distilled in students:
            pairs.append((evaluate_ranker(control, test)["auc"], evaluate_ranker(distilled, test)["auc"]))
        control, distilled = students[0]
        variants = [
            ("teacher", teacher),
            ("int8", compress_ranker(teacher, quantize="int8")),
            ("int4", compress_ranker(teacher, quantize="int4")),
            ("int8+mlp8", compress_ranker(teacher, quantize="int8", quantize_mlp=True)),
            ("student control", control),
            ("student distilled", distilled),
            ("distilled+int8", compress_ranker(distilled, quantize="int8")),
            ("distilled+int8+mlp8", compress_ranker(distilled, quantize="int8", quantize_mlp=True)),
        ]
        for label, model in variants:
            runs.setdefault(label, []).append(evaluate_ranker(model, test)["auc"])
        if split_seed == 0:  # artifacts, memory and latency from the first split
            rows = test.take(np.arange(min(len(test), 4096)))
            paths = [(label, save_ranker(VARIANTS / name / label.replace(" ", "_"), model, encoder=encoder), "")
                     for label, model in variants]
            reports = measure_variants(paths, metric_name="AUC",
                                       evaluate=lambda m, test=test: evaluate_ranker(m.model, test)["auc"],
                                       batch=lambda m, rows=rows: predict_ranker(m.model, rows), rounds=repeats)
        print(f"  {name} split {split_seed}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in runs.items()), flush=True)
    teacher_auc = runs["teacher"]
    return {
        "setup": setup,
        "splits": len(splits),
        "student_seeds": student_seeds,
        "auc": {k: interval(v) for k, v in runs.items()},
        "diff_vs_teacher": {k: interval([a - b for a, b in zip(v, teacher_auc)]) for k, v in runs.items()},
        "students": {"control": interval([c for c, _ in pairs]), "distilled": interval([d for _, d in pairs]),
                     "distilled_minus_control": interval([d - c for c, d in pairs]),
                     "wins": sum(d > c for c, d in pairs), "pairs": pairs},
        "runs": runs,
        "variants": [{**asdict(r), "model_bytes": r.model_bytes} for r in reports],
        "_reports": reports,
    }


# ------------------------------------------------------------------ output
def _ci(stat: dict[str, float], fmt: str) -> str:
    """'mean ± half-width', or the mean alone when there is one run (no interval)."""
    mean = format(stat["mean"], fmt)
    return mean if stat["n"] < 2 else f"{mean} ± {stat['ci95']:.4f}"


def markdown(result: dict[str, Any]) -> str:
    lines: list[str] = []
    if "retrieval" in result:
        r = result["retrieval"]
        s = r["students"]
        teacher_ndcg, small = r["_reports"][0].metric, s["distilled_int4_mlp8"]
        lines += ["### ml-latest-small, recbole protocol (seed 2020): two-tower teacher and variants", "",
                  markdown_table(r["_reports"], "teacher"), "",
                  f"Students ({SIZES}), test NDCG@10 over {s['control']['n']} training seed(s): "
                  f"control {s['control']['mean']:.4f} ± {s['control']['ci95']:.4f}, distilled "
                  f"{s['distilled']['mean']:.4f} ± {s['distilled']['ci95']:.4f}, paired difference "
                  f"{s['paired_diff']['mean']:+.4f} ± {s['paired_diff']['ci95']:.4f} (95% t-interval; distilled better "
                  f"in {s['wins']} of {s['control']['n']}); on validation {s['valid_paired_diff']['mean']:+.4f} ± "
                  f"{s['valid_paired_diff']['ci95']:.4f} (better in {s['valid_wins']}). Teacher: test "
                  f"{teacher_ndcg:.4f}. Distilled + int4 tables + int8 MLPs (the documented `turborec compress` "
                  f"command): {_ci(small, '.4f')}, {100 * small['mean'] / teacher_ndcg:.1f}% of the teacher "
                  f"(per seed {', '.join(f'{100 * v / teacher_ndcg:.1f}%' for v in s['runs']['distilled_int4_mlp8'])})"
                  ".", ""]  # fmt: skip
    if "scale" in result:
        lines += ["### memory at scale: two-tower over 300k items and 25k users (1 epoch; memory only)", "",
                  "Latency here is the user tower for 256 users (scoring 300k items is not the point).", "",
                  markdown_table(result["scale"]["_reports"], "dense"), ""]  # fmt: skip
    for name in ("criteo", "synthetic"):
        if name not in result:
            continue
        r = result[name]
        st = r["students"]
        diff = st["distilled_minus_control"]
        lines += [f"### {name}: {r['setup']['kind']} teacher ({r['splits']} split(s)); bytes and latency from split 0",
                  "", markdown_table(r["_reports"], "teacher"), "",
                  "| variant | test AUC (mean ± 95% CI over splits) | Δ vs teacher (paired) |", "|---|---:|---:|"]  # fmt: skip
        for label, auc in r["auc"].items():
            d = r["diff_vs_teacher"][label]
            lines.append(f"| {label} | {_ci(auc, '.4f')} | {_ci(d, '+.4f')} |")
        lines += ["", f"Students over {diff['n']} (split, seed) pairs: control {st['control']['mean']:.4f}, distilled "
                  f"{st['distilled']['mean']:.4f}; distilled minus control {diff['mean']:+.4f} ± {diff['ci95']:.4f} "
                  f"(paired, 95% t-interval), distilled better in {st['wins']} of {diff['n']}.", ""]
    return "\n".join(lines)


def previous_parts() -> dict[str, Any]:
    """The parts of the last full results/compression.json, their variant rows as reports again."""
    path = REPO / "benchmarks" / "results" / "compression.json"
    previous = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    parts = {}
    for name in ("retrieval", "scale", "criteo", "synthetic"):
        if name in previous:
            part = previous[name]
            part["_reports"] = [VariantReport(**{k: v for k, v in row.items() if k != "model_bytes"})
                                for row in part["variants"]]  # fmt: skip
            parts[name] = part
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "retrieval", "scale", "rankers"), default="all")
    parser.add_argument("--seeds", type=int, default=5, help="student training seeds (ml-latest-small, synthetic CTR)")
    parser.add_argument("--splits", type=int, default=5, help="shuffled splits of the Criteo sample")
    parser.add_argument("--repeats", type=int, default=100, help="timed batches per variant (median reported)")
    parser.add_argument("--merge", action="store_true",
                        help="with --part: keep the other parts from results/compression.json and rewrite it whole")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    result: dict[str, Any] = {}
    if args.part in ("all", "retrieval"):
        result["retrieval"] = retrieval(args.seeds, args.repeats)
        plot_reports(result["retrieval"]["_reports"], IMG / "compression_retrieval.png",
                     "ml-latest-small two-tower: compressed variants vs the teacher", "teacher")  # fmt: skip
    if args.part in ("all", "scale"):
        result["scale"] = scale(args.repeats)
    if args.part in ("all", "rankers"):
        result["criteo"] = rankers("criteo", args.splits, 1, args.repeats)
        result["synthetic"] = rankers("synthetic", 1, args.seeds, args.repeats)
        for name in ("criteo", "synthetic"):
            plot_reports(result[name]["_reports"], IMG / f"compression_{name}.png",
                         f"{name} {RANKERS[name]['kind']}: compressed variants vs the teacher", "teacher")  # fmt: skip
    for part in result.values():
        part["measured"] = time.strftime("%Y-%m-%d")
    if args.merge and args.part != "all":
        result = {**previous_parts(), **result}
    table = markdown(result)
    payload = {k: {kk: vv for kk, vv in v.items() if kk != "_reports"} for k, v in result.items()}
    payload["seconds"] = time.perf_counter() - started
    payload["median_note"] = "latency: median of --repeats timed batches after 3 warm-up calls, 1 thread"
    write_results("compression" if args.part == "all" or args.merge else f"compression_{args.part}", payload, table)
    print(f"({payload['seconds']:.0f}s)")


if __name__ == "__main__":
    main()
