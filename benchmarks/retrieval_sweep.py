"""A validation sweep of one retrieval model's options: every variant x split seed in parallel processes.

    python benchmarks/retrieval_sweep.py --base two-tower:teacher=ease \\
        --variants "" history_len=2000 pooling=sqrt use_user_id=false --seeds 2020 2021 2022 --jobs 2
    python benchmarks/retrieval_sweep.py ... --combine 3     # then a round over pairs/triples of the best changes

Each variant is ``key=value[,key=value]`` added to ``--base`` (``""`` is the base alone). Every (variant,
seed) runs in its own process with one torch thread (``--jobs`` at a time), fitted and early-stopped on
the recbole protocol's validation split of that seed as ``benchmarks/training.py`` does; the ranking is
by the **validation** median (choices are made on validation; test is reported beside it, never chosen
on). ``--combine N`` runs a second round: the N single changes with the best validation medians above the
base, merged in every combination of two or more (later keys win on a clash).

Writes benchmarks/results/retrieval_sweep[_<name>].json and a markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import time
from typing import Any

from _common import SHARED_DATA, markdown_table, median, parse_options, parse_spec, write_results


def label(options: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in options.items()) or "(base)"


_SPLITS: dict[int, Any] = {}


def run_one(job: tuple[str, str, str, dict[str, str], int, str]) -> dict[str, Any]:
    """Fit ``name`` with ``options`` on seed ``seed``'s split (in a worker process, one thread)."""
    import torch

    from training import retrieval_row
    from turborec.data import apply_protocol, load_movielens

    data_path, name, variant, options, seed, device = job
    torch.set_num_threads(1)
    if seed not in _SPLITS:
        _SPLITS[seed] = apply_protocol("recbole", load_movielens(data_path), seed=seed)
    row = retrieval_row(name, _SPLITS[seed], options, seed, device)
    row.pop("curve", None)
    return {"variant": variant, "seed": seed, **{k: row[k] for k in
            ("valid_ndcg", "test_ndcg", "epochs", "fit_cpu_s") if k in row}}


def run_round(pool: Any, data: str, name: str, base: dict[str, str], variants: list[dict[str, str]],
              seeds: list[int], device: str) -> list[dict[str, Any]]:
    jobs = [(data, name, label(v), {**base, **v}, s, device) for v in variants for s in seeds]
    runs = []
    for row in pool.imap_unordered(run_one, jobs):
        print(f"{row['variant']} seed {row['seed']}: valid {row['valid_ndcg']:.4f} test {row['test_ndcg']:.4f}",
              flush=True)
        runs.append(row)
    return runs


def summarise(runs: list[dict[str, Any]], seeds: list[int]) -> list[dict[str, Any]]:
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_variant.setdefault(r["variant"], []).append(r)
    rows = []
    for variant, group in by_variant.items():
        group.sort(key=lambda r: seeds.index(r["seed"]))
        rows.append({"variant": variant, "seeds": len(group),
                     "valid_median": median([r["valid_ndcg"] for r in group]),
                     "test_median": median([r["test_ndcg"] for r in group]),
                     "valid": " / ".join(f"{r['valid_ndcg']:.4f}" for r in group),
                     "test": " / ".join(f"{r['test_ndcg']:.4f}" for r in group),
                     "fit_cpu_s": median([r["fit_cpu_s"] for r in group])})
    rows.sort(key=lambda r: -r["valid_median"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED_DATA / "ml-latest-small"))
    ap.add_argument("--name", default=None, help="suffix for the result files")
    ap.add_argument("--base", default="two-tower:teacher=ease", help="MODEL[:KEY=VALUE,...] every variant starts from")
    ap.add_argument("--variants", nargs="*", default=[""], help='KEY=VALUE[,KEY=VALUE] each; "" = the base')
    ap.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    ap.add_argument("--jobs", type=int, default=2, help="processes at a time (one torch thread each)")
    ap.add_argument("--combine", type=int, default=0, metavar="N",
                    help="then combine the N best single changes (by validation median) above the base")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    name, base = parse_spec(args.base)
    variants = [parse_options(v) for v in args.variants]
    if {} not in variants:
        variants.insert(0, {})
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn" if args.device != "cpu" else "fork")
    with ctx.Pool(args.jobs) as pool:
        runs = run_round(pool, args.data, name, base, variants, args.seeds, args.device)
        rows = summarise(runs, args.seeds)
        if args.combine >= 2:
            base_valid = next(r["valid_median"] for r in rows if r["variant"] == "(base)")
            best = [parse_options(r["variant"]) for r in rows
                    if r["variant"] != "(base)" and r["valid_median"] > base_valid][: args.combine]
            merged = [dict(itertools.chain.from_iterable(o.items() for o in combo))
                      for n in range(2, len(best) + 1) for combo in itertools.combinations(best, n)]
            runs += run_round(pool, args.data, name, base, merged, args.seeds, args.device)
            rows = summarise(runs, args.seeds)
    table = markdown_table(rows)
    print(table)
    write_results(f"retrieval_sweep_{args.name}" if args.name else "retrieval_sweep",
                  {"data": args.data, "protocol": "recbole", "model": name, "base": base, "seeds": args.seeds,
                   "jobs": args.jobs, "device": args.device, "seconds": time.perf_counter() - t0,
                   "rows": rows, "runs": runs}, table)


if __name__ == "__main__":
    main()
