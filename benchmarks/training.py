"""Training speed and time-to-quality of every model, by thread count and competing load.

    python benchmarks/training.py                                   # ml-latest-small, 1 and 2 threads, no load
    python benchmarks/training.py --threads 1 2 --loads 0 1         # ... and with one busy process beside it
    python benchmarks/training.py --models two-tower two-tower:objective=users,holdout=0.5   # model[:options]
    python benchmarks/training.py --ctr ../shared/data/criteo-sample-10k/wideresdnn_criteo_train_sample.txt.gz \
        --ctr-models logreg dlrm                                    # CTR rows (the CTR recipe)
    python benchmarks/training.py --models --ctr-synthetic 500000  # CTR rows on a big Criteo-shaped synthetic log
    python benchmarks/training.py --threads 1 2 --loads 0 1 --quick # every setting, epochs capped at 3
    python benchmarks/training.py --device cuda --threads 1         # the GPU column
    python benchmarks/training.py --profile                         # cProfile of one two-tower epoch first
    python benchmarks/training.py --threads 1 --seeds 2020 2021 2022 --models two-tower   # 3 splits + medians
    python benchmarks/training.py --threads 1 --seeds 2020 2021 2022 --models two-tower:teacher=ease   # distilled

Per model and setting: examples/s of a training epoch (validation excluded; the median epoch; CTR
rows also per CPU second, examples_cpu_s), time-to-quality (wall and process-CPU seconds from the
start of fit until validation NDCG@10, or AUC for CTR, is within 1% of the run's best), the whole fit's wall and CPU seconds, the best
validation score and the test score. Retrieval data: the recbole protocol split of --data (seed
--seed, or each of --seeds; with several seeds a second table holds each setting's medians). A competing load is N processes each spinning one core for the setting's duration (they
stop by themselves at a deadline and are terminated after it). CPU seconds are this process's
(all its threads), so on a shared machine they say what the work cost when wall time is noisy.

Writes benchmarks/results/training[_<name>].json and a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from _common import SHARED_DATA, markdown_table, median, parse_spec, write_results
from turborec.data import apply_protocol, load_movielens, synthetic
from turborec.train.options import make_estimator, option_kinds

MODELS = ("popularity", "bpr", "ease", "two-tower")
CTR_MODELS = ("logreg", "fm", "dlrm", "dcnv2", "deepfm")
WITHIN = 0.01  # time-to-quality: first validation within 1% of the run's best


@contextlib.contextmanager
def competing_load(n: int, seconds: float = 3600.0) -> Iterator[None]:
    """``n`` processes that each keep one core busy until the block ends (or ``seconds`` pass)."""
    spin = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def time_to_quality(scores: list[float], at: list[float], higher_better: bool = True) -> tuple[int, float]:
    """(index, time) of the first score within WITHIN of the best one."""
    best = max(scores) if higher_better else min(scores)
    target = best - WITHIN * abs(best) if higher_better else best + WITHIN * abs(best)
    first = next(i for i, s in enumerate(scores) if (s >= target if higher_better else s <= target))
    return first, at[first]


_TEACHERS: dict[tuple[str, int], tuple[Any, float]] = {}


def fitted_teacher(name: str, split: Any, seed: int, device: str) -> tuple[Any, float]:
    """(the retrieval model ``name`` fitted on ``split``, its fit's CPU seconds), fitted once per seed."""
    if (name, seed) not in _TEACHERS:
        cpu0 = time.process_time()
        teacher = make_estimator(name, seed=seed, progress=False, device=device).fit(split.train, split.valid)
        _TEACHERS[name, seed] = teacher, time.process_time() - cpu0
    return _TEACHERS[name, seed]


def retrieval_row(name: str, split: Any, params: dict[str, str], seed: int, device: str) -> dict[str, Any]:
    options = dict(params)
    teacher_name = options.pop("teacher", None)  # two-tower:teacher=ease: trained against EASE's scores
    model = make_estimator(name, options, seed=seed, progress=False, device=device)
    teacher_cpu = None
    if teacher_name:
        model.teacher, teacher_cpu = fitted_teacher(teacher_name, split, seed, device)  # type: ignore[attr-defined]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    model.fit(split.train, split.valid)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    test = model.evaluate(split.test, exclude=[split.valid], ks=(10,))["ndcg@10"]
    n = len(split.train)  # one epoch passes over every training interaction (BPR: each distinct pair)
    history = getattr(model, "history", None)
    row: dict[str, Any] = {"model": name}
    if history is None or not history.scores:  # counted or closed-form: one pass, no epochs
        valid = model.evaluate(split.valid, ks=(10,))["ndcg@10"]
        row.update(epochs=0, examples_s=n / wall, ttq_s=wall, ttq_cpu_s=cpu, valid_ndcg=valid)
    else:
        every = model.train_config.eval_every
        ends = [i for i in range(len(history.losses)) if (i + 1) % every == 0][: len(history.scores)]
        first, ttq = time_to_quality(history.scores, [history.elapsed[i] for i in ends])
        row.update(epochs=len(history.losses), best_epoch=history.best_epoch + 1,
                   batch_size=model.train_config.batch_size, examples_s=n / median(history.train_seconds), ttq_s=ttq,
                   ttq_cpu_s=history.cpu_elapsed[ends[first]], valid_ndcg=history.best_score)
        # the validation curve (kept in the JSON, not the table): where the best came and what stopping cost
        row["curve"] = {"valid_ndcg": history.scores, "cpu_s": [history.cpu_elapsed[i] for i in ends]}
    row.update(fit_s=wall, fit_cpu_s=cpu, test_ndcg=test)
    if teacher_cpu is not None:  # the teacher's own fit, not in the columns above
        row["teacher_cpu_s"] = teacher_cpu
    return row


def ctr_row(spec: str, raw: Any, seed: int, threads: int, device: str, preset: str,
            epochs: int | None = None) -> dict[str, Any]:  # fmt: skip
    """One CTR recipe run (the one ``turborec train --task ctr`` uses: encoder, LR, warm start, net).

    examples_s / examples_cpu_s: training rows per wall / process-CPU second of the net's median complete
    epoch (its training steps; validation excluded). ttq: from the start of the recipe (encoding and, for
    the warm-started nets, the LR fit included) to the first validation, the LR-equivalent start among
    them, whose AUC is within 1% of the run's best."""
    from turborec.train.ctr_recipe import ctr_recipe, train_ctr

    kind, options = parse_spec(spec)  # kind[:key=value,...], options on top of the preset (--param's)
    recipe = ctr_recipe(kind, preset, options, seed=seed, device=device, threads=threads, epochs=epochs)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    run = train_ctr(raw, recipe)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    fit = run.fit
    full = [i for i, n in enumerate(fit.epoch_rows) if n == max(fit.epoch_rows)]  # epochs not cut by a stop
    rows = fit.epoch_rows[full[0]]
    row: dict[str, Any] = {
        "model": spec,
        "epochs": len(fit.epoch_rows),
        "examples_s": rows / median([fit.epoch_seconds[i] for i in full]),
        "examples_cpu_s": rows / median([fit.epoch_cpu_seconds[i] for i in full]),
    }
    evals = [h for h in fit.history if "valid_auc" in h]
    if evals:
        first, _ = time_to_quality([h["valid_auc"] for h in evals], [h["step"] for h in evals])
        row["ttq_s"] = wall - fit.seconds + evals[first]["elapsed"]
        row["ttq_cpu_s"] = cpu - fit.cpu_seconds + evals[first]["cpu_elapsed"]
    m = run.metrics
    row.update(fit_s=wall, fit_cpu_s=cpu, valid_auc=m["valid_auc"], test_auc=m["auc"],
               valid_logloss=m["valid_logloss"], logreg_valid_logloss=m.get("logreg_valid_logloss"),
               test_logloss=m["logloss"])  # fmt: skip
    return row


def synthetic_ctr_raw(n_rows: int, seed: int) -> Any:
    """A Criteo-shaped synthetic click log (26 categorical features of 10-2,000 values, 13 dense; the
    generator's factorization-machine click model), as raw rows for the recipe's "synthetic" preset."""
    from turborec.data.ctr import SyntheticCTRConfig, synthetic_ctr

    vocab = tuple(v for _ in range(4) for v in (10, 50, 200, 500, 1000, 2000, 100))[:26]
    config = SyntheticCTRConfig(n_rows=n_rows, vocab_sizes=vocab, n_dense=13, seed=seed)
    return synthetic_ctr(config).raw(f"synthetic-ctr-{n_rows}")


def profile_two_tower(split: Any, params: dict[str, str], seed: int) -> str:
    """cProfile of a one-epoch two-tower fit (with its validation pass): where the time goes."""
    model = make_estimator("two-tower", params, seed=seed, progress=False, epochs=1)
    prof = cProfile.Profile()
    prof.enable()
    model.fit(split.train, split.valid)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
    return out.getvalue()


def seed_medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (threads, load, device, CTR data, model): the median of each number over its seeds."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["threads"], row["load"], row["device"], row.get("data"), row["model"])
        groups.setdefault(key, []).append(row)
    out = []
    for (threads, load, device, data, model), group in groups.items():
        numbers = [k for k, v in group[0].items() if isinstance(v, (int, float)) and k not in ("threads", "load", "seed")]
        out.append({"threads": threads, "load": load, "device": device, **({"data": data} if data else {}),
                    "model": model, "seeds": len(group),
                    **{k: median([r[k] for r in group if r.get(k) is not None]) for k in numbers}})  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED_DATA / "ml-latest-small"))
    ap.add_argument("--name", default=None, help="suffix for the result files")
    ap.add_argument("--synthetic", type=int, default=None, metavar="N",
                    help="instead of --data: N synthetic interactions (turborec.data.synthetic) over MovieLens-1M's "
                         "shape, 6,040 users x 3,706 items at 1M")
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--param", action="append", default=[], metavar="MODEL:KEY=VALUE",
                    help="option for one model, repeatable (e.g. two-tower:objective=users)")
    ap.add_argument("--ctr", default=None, metavar="PATH", help="labelled CTR data for the CTR rows (omit: none)")
    ap.add_argument("--ctr-format", default="criteo", help="reader and recipe preset of --ctr (criteo, avazu, libfm)")
    ap.add_argument("--ctr-models", nargs="*", default=list(CTR_MODELS),
                    help="CTR kinds, each optionally with recipe options: dcnv2:low_rank=32,dim=8")
    ap.add_argument("--ctr-synthetic", type=int, default=None, metavar="N",
                    help="CTR rows also on N Criteo-shaped synthetic rows (26 categorical, 13 dense features), "
                         "trained with the recipe's 'synthetic' preset (big batches): per-epoch throughput "
                         "without the per-step overhead of a 10k-row sample's small batches")
    ap.add_argument("--max-epochs", type=int, default=None, metavar="N",
                    help="cap every trained model at N epochs (retrieval models with epochs, CTR nets)")
    ap.add_argument("--quick", action="store_true",
                    help="a short run (--max-epochs 3 unless given): to check the whole grid end to end")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--loads", nargs="+", type=int, default=[0], help="competing busy processes per setting")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="several split seeds (overrides --seed)")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one two-tower epoch first")
    args = ap.parse_args()
    params: dict[str, dict[str, str]] = {}
    for item in args.param:
        model, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        params.setdefault(model, {})[key] = value
    seeds = args.seeds or [args.seed]
    if args.synthetic:
        scale = args.synthetic / 1_000_209  # MovieLens-1M: 1,000,209 ratings, 6,040 users, 3,706 items
        data = synthetic(n_users=max(int(6_040 * scale), 10), n_items=max(int(3_706 * scale), 10),
                         n_interactions=args.synthetic, seed=0)
        args.data = f"synthetic-{args.synthetic}"
    else:
        data = load_movielens(args.data)
    splits = {seed: apply_protocol("recbole", data, seed=seed) for seed in seeds}
    print(splits[seeds[0]].summary(), flush=True)
    profile = None
    if args.profile:
        torch.set_num_threads(1)
        profile = profile_two_tower(splits[seeds[0]], params.get("two-tower", {}), seeds[0])
        print(profile, flush=True)
    if args.quick and args.max_epochs is None:
        args.max_epochs = 3
    ctr_sets: list[tuple[str, Any, str]] = []  # (data name, raw rows, recipe preset)
    if args.ctr:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from turborec.cli.ctr import read_raw
        from turborec.train.ctr_recipe import FORMAT_PRESETS

        ctr_sets.append((Path(args.ctr).name, read_raw(args.ctr, args.ctr_format),
                         FORMAT_PRESETS.get(args.ctr_format, "criteo")))  # fmt: skip
    if args.ctr_synthetic:
        ctr_sets.append((f"synthetic-ctr-{args.ctr_synthetic}", synthetic_ctr_raw(args.ctr_synthetic, 0), "synthetic"))
    rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    result_name = args.name or Path(args.data.rstrip("/")).name

    def save() -> None:  # after every row, so a long run that is cut short keeps what it measured
        summary = seed_medians(rows) if len(seeds) > 1 else []
        table = markdown_table(rows) + (f"\n\nMedians over seeds {seeds}:\n\n" + markdown_table(summary) if summary else "")
        write_results(
            f"training_{result_name}",
            {"data": args.data, "ctr": args.ctr, "protocol": "recbole", "seeds": seeds, "params": params,
             "rows": rows, "medians": summary, "curves": curves, "profile": profile},
            table,
        )

    for load in args.loads:
        for threads in args.threads:
            with competing_load(load):
                torch.set_num_threads(threads)
                for spec in args.models:
                    model_name, spec_options = parse_spec(spec)
                    options = {**params.get(model_name, {}), **spec_options}
                    if args.max_epochs and "epochs" in option_kinds(model_name) and "epochs" not in options:
                        options["epochs"] = str(args.max_epochs)
                    for seed in seeds:
                        row = retrieval_row(model_name, splits[seed], options, seed, args.device)
                        row["model"] = spec
                        key = {"threads": threads, "load": load, "device": args.device, "seed": seed}
                        if "curve" in row:
                            curves.append({**key, "model": spec, **row.pop("curve")})
                        rows.append({**key, **row})
                        save()
                for data_name, raw, preset in ctr_sets:
                    for kind in args.ctr_models:
                        for seed in seeds:
                            ctr = ctr_row(kind, raw, seed, threads, args.device, preset, args.max_epochs)
                            rows.append({"threads": threads, "load": load, "device": args.device, "seed": seed,
                                         "data": data_name, **ctr})  # fmt: skip
                            save()
    save()


if __name__ == "__main__":
    main()
