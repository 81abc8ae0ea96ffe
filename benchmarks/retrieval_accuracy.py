"""Accuracy and training time of every retrieval model under the recbole protocol.

    python benchmarks/retrieval_accuracy.py                       # ml-latest-small from ../shared/data
    python benchmarks/retrieval_accuracy.py --data PATH/ml-1m     # MovieLens-1M ratings.dat, same protocol
    python benchmarks/retrieval_accuracy.py --seeds 2020 2021 2022 # median over seeds

Writes benchmarks/results/retrieval_accuracy[_<name>].json and a markdown table.
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import SHARED_DATA, markdown_table, median, write_results
from turborec.data import apply_protocol, load_movielens
from turborec.train.options import make_estimator

MODELS = ("popularity", "bpr", "ease", "two-tower")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED_DATA / "ml-latest-small"))
    ap.add_argument("--name", default=None, help="suffix for the result files (default: from --data)")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[2020])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_movielens(args.data)
    per_model: dict[str, list[dict[str, float]]] = {m: [] for m in args.models}
    for seed in args.seeds:
        split = apply_protocol("recbole", data, seed=seed)
        print(split.summary())
        for name in args.models:
            model = make_estimator(name, seed=seed, progress=False)
            t0 = time.perf_counter()
            model.fit(split.train, split.valid)
            fit_s = time.perf_counter() - t0
            rep = model.evaluate(split.test, exclude=[split.valid], ks=(10, 20))
            row = {k: rep[k] for k in ("recall@10", "ndcg@10", "hit@10", "mrr@10", "recall@20", "ndcg@20")}
            row["valid ndcg@10"] = model.evaluate(split.valid, ks=(10,))["ndcg@10"]  # what choices are made on
            row["fit_s"] = fit_s
            per_model[name].append(row)
            print(f"seed {seed} {name}: ndcg@10 {row['ndcg@10']:.4f} fit {fit_s:.1f}s", flush=True)
    rows = []
    pop = median([r["ndcg@10"] for r in per_model.get("popularity", [])]) if "popularity" in per_model else None
    for name, runs in per_model.items():
        row: dict[str, object] = {"model": name}
        for key in runs[0]:
            row[key] = median([r[key] for r in runs])
        if pop:
            row["ndcg@10 / popularity"] = float(row["ndcg@10"]) / pop  # type: ignore[arg-type]
        rows.append(row)
    name = args.name or args.data.rstrip("/").split("/")[-1]
    table = markdown_table(rows)
    write_results(
        f"retrieval_accuracy_{name}",
        {"data": args.data, "protocol": "recbole", "seeds": args.seeds, "threads": args.threads, "rows": rows,
         "runs": per_model},
        table,
    )


if __name__ == "__main__":
    main()
