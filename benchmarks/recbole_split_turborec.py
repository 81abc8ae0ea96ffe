"""turborec's models refitted on RecBole's own split: the same train/valid/test events, no split noise.

``benchmarks/recbole_crosscheck.py --export-splits DIR`` (run in RecBole's venv) writes RecBole's
split per seed as raw ids; this script (the project's venv) rebuilds turborec's ``recbole``-protocol
data, labels each event with RecBole's part, fits turborec's models and evaluates them exactly as
``benchmarks/retrieval_accuracy.py`` does. A turborec-vs-RecBole gap on these numbers is the
models' (or the metric's), not the split's.

    python benchmarks/recbole_split_turborec.py --splits /tmp/recbole-splits --threads 1

Writes benchmarks/results/recbole_split_turborec.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from _common import SHARED_DATA, markdown_table, median, write_results
from turborec.data import Split, get_protocol, load_movielens
from turborec.train.options import make_estimator

MODELS = ("popularity", "bpr", "ease")


def recbole_split(splits: Path, seed: int) -> Split:
    """turborec's filtered data, cut into parts exactly where RecBole cut it for ``seed``."""
    x = get_protocol("recbole").prepare(load_movielens(SHARED_DATA / "ml-latest-small"))
    part_of_pair: dict[tuple[int, int], int] = {}
    with open(splits / f"recbole_split_s{seed}.csv", newline="") as f:
        for row in csv.DictReader(f):
            part_of_pair[(int(row["userId"]), int(row["movieId"]))] = int(row["part"])
    users, items = x.users.decode(x.user), x.items.decode(x.item)
    part = np.array([part_of_pair.get((int(u), int(i)), -1) for u, i in zip(users, items, strict=True)])
    if len(part_of_pair) != len(x) or (part < 0).any():
        raise SystemExit(f"RecBole's split ({len(part_of_pair)} events) does not cover turborec's {len(x)} events")
    train, valid, test = (x.select(part == k) for k in range(3))
    return Split(train, valid, test, {"protocol": "recbole (RecBole's own split)", "seed": seed})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=Path, default=Path("/tmp/recbole-splits"))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    per_model: dict[str, list[dict[str, float]]] = {m: [] for m in args.models}
    for seed in args.seeds:
        split = recbole_split(args.splits, seed)
        print(split.summary())
        for name in args.models:
            model = make_estimator(name, seed=seed, progress=False)
            c0 = time.process_time()
            model.fit(split.train, split.valid)
            fit_cpu_s = time.process_time() - c0
            valid = model.evaluate(split.valid, ks=(10,))
            rep = model.evaluate(split.test, exclude=[split.valid], ks=(10,))
            row = {k: rep[k] for k in ("ndcg@10", "recall@10", "hit@10", "mrr@10")}
            row["valid ndcg@10"] = valid["ndcg@10"]
            row["fit_cpu_s"] = fit_cpu_s
            per_model[name].append(row)
            print(f"seed {seed} {name}: valid {valid['ndcg@10']:.4f} test ndcg@10 {row['ndcg@10']:.4f}", flush=True)
    rows = []
    for name, runs in per_model.items():
        row: dict[str, object] = {"model": f"turborec {name} on RecBole's split"}
        row["test ndcg@10 per seed"] = " / ".join(f"{r['ndcg@10']:.4f}" for r in runs)
        for key in runs[0]:
            row[key] = median([r[key] for r in runs])
        rows.append(row)
    write_results(
        "recbole_split_turborec",
        {"splits": str(args.splits), "seeds": args.seeds, "threads": args.threads, "rows": rows, "runs": per_model},
        markdown_table(rows),
    )


if __name__ == "__main__":
    main()
