"""Two-stage pipeline vs retrieval only on ml-latest-small (recbole protocol), as a function of N.

    python benchmarks/pipeline.py [--seed 2020] [--ranker dcnv2]

The retriever (two-tower) is trained on train with early stopping on valid; the ranker is
trained on the valid part (stacking); both are scored on test. Writes
benchmarks/results/pipeline.json and a markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from _common import SHARED_DATA, markdown_table, write_results
from turborec.data import apply_protocol, load_movielens
from turborec.train import TwoStagePipeline, TwoTowerRecommender, load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED_DATA / "ml-latest-small"))
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--ranker", default="dlrm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=None, help="reuse (or write) the trained two-tower at this path")
    ap.add_argument("--save", default=None, help="also save the fitted pipeline here (e.g. for benchmarks/serving.py)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    split = apply_protocol("recbole", load_movielens(args.data), seed=args.seed)
    if args.cache and Path(args.cache, "manifest.json").is_file():
        retriever = load(args.cache)
    else:
        retriever = TwoTowerRecommender(seed=args.seed, progress=False).fit(split.train, split.valid)
        if args.cache:
            retriever.save(args.cache)
    base = retriever.evaluate(split.test, exclude=[split.valid], ks=(10,))
    rows = [{"stage": "retrieval only", "candidates": "all", "ndcg@10": base["ndcg@10"], "recall@10": base["recall@10"],
             "ms/user": float("nan")}]
    t0 = time.perf_counter()
    pipe = TwoStagePipeline(retriever, ranker=args.ranker, seed=args.seed).fit(split.train, split.valid)
    fit_s = time.perf_counter() - t0
    if args.save:
        pipe.save(args.save)
    for n in (10, 20, 50, 100, 200, 500):
        t = time.perf_counter()
        m = pipe.evaluate(split.test, exclude=[split.valid], ks=(10,), n_candidates=n)
        ms = 1000 * (time.perf_counter() - t) / max(m["n_users"], 1)
        rows.append({"stage": f"retrieve -> {args.ranker}", "candidates": n, "ndcg@10": m["ndcg@10"],
                     "recall@10": m["recall@10"], "ms/user": ms})
        print(rows[-1], flush=True)
    table = markdown_table(rows)
    write_results(f"pipeline_{args.ranker}", {"seed": args.seed, "ranker": args.ranker, "ranker_fit_s": fit_s,
                               "ranker_valid_auc": pipe.metrics.get("ranker_valid_auc"),
                               "ranker_weight": pipe.ranker_weight, "fit_metrics": pipe.metrics, "rows": rows},
                  table + f"\n\nranker weight in the final score, chosen on held-out validation users: "
                          f"{pipe.ranker_weight:g}")


if __name__ == "__main__":
    main()
