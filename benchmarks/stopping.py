"""Early-stopping rules replayed on long validation curves: where each rule stops, what it keeps, and
how much a rounding-level change of the initial weights moves that (issue 16).

    python benchmarks/stopping.py --seeds 2020 2021 2022                 # fit, then replay the rules
    python benchmarks/stopping.py --replay benchmarks/results/stopping_ml-latest-small.json   # replay only

Each fit is the default two-tower (or ``--param KEY=VALUE`` on top) with a long patience (``--patience``),
logging per validation the validation NDCG@10 that early stopping reads, the test NDCG@10 of the same
(weight-averaged) weights and the process CPU seconds (the test pass excluded). Each seed is fitted twice:
as is, and with every initial weight multiplied by ``1 + 1e-6 N(0, 1)`` (a "twin": the same fit up to
float rounding). A rule (patience, stop_window, stop_tolerance) is replayed on a curve's prefix, as
``fit_loop`` would have run it: the stop, the kept (best validated) epoch, its validation and test NDCG,
time-to-quality and fit CPU seconds. Tuning reads validation only; test is reported.

Writes benchmarks/results/stopping_<name>.json and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from _common import SHARED_DATA, markdown_table, write_results
from turborec.data import apply_protocol, load_movielens
from turborec.metrics.ranking import evaluate_ranking
from turborec.train.options import make_estimator
from turborec.train.trainer import Parallel, stale_validations

RULES = ((15, 1, 0.0), (15, 3, 0.0), (15, 5, 0.0), (15, 10, 0.0), (20, 10, 0.0), (15, 5, 0.001), (15, 5, 0.002),
         (30, 1, 0.0))


class _Logged(Parallel):
    """One process, as the default; a place to log each validation with the test NDCG@10 of the same
    (weight-averaged) weights, and to make the twin's rounding-level change of the initial weights."""

    def __init__(self, model: Any, split: Any, twin: bool):
        self.model, self.twin = model, twin
        self.test, self.mask = split.test.to_csr(), None
        self.log: dict[str, list[float]] = {"valid": [], "test": [], "cpu": []}
        self.cpu0, self.test_cpu = time.process_time(), 0.0
        self.valid = split.valid

    def prepare(self, net: torch.nn.Module) -> torch.nn.Module:
        self.mask = (self.model.histories.to_csr() + self.valid.to_csr()).tocsr()
        if self.twin:
            gen = torch.Generator().manual_seed(99)
            with torch.no_grad():
                for p in net.parameters():
                    p.mul_(1 + 1e-6 * torch.randn(p.shape, generator=gen))
        return net

    def evaluate(self, score: Callable[[], float]) -> Callable[[], float]:
        def logged() -> float:
            valid = score()
            t0 = time.process_time()
            test = evaluate_ranking(self.model.score_users, self.test, exclude=self.mask, ks=(10,))["ndcg@10"]
            self.test_cpu += time.process_time() - t0
            self.log["valid"].append(valid)
            self.log["test"].append(test)
            self.log["cpu"].append(time.process_time() - self.cpu0 - self.test_cpu)
            return valid

        return logged


def fit_curve(data: Any, seed: int, twin: bool, patience: int, params: dict[str, str]) -> dict[str, Any]:
    split = apply_protocol("recbole", data, seed=seed)
    model = make_estimator("two-tower", params, seed=seed, progress=False, patience=patience)
    logged = _Logged(model, split, twin)
    model.parallel = logged  # type: ignore[attr-defined]
    logged.cpu0 = time.process_time()
    model.fit(split.train, split.valid)
    return {"seed": seed, "twin": twin, **logged.log}


def replay(curve: dict[str, Any], patience: int, window: int, tolerance: float) -> dict[str, Any]:
    scores = curve["valid"]
    stop = next((i for i in range(len(scores)) if stale_validations(scores[: i + 1], window, tolerance) >= patience),
                len(scores) - 1)
    kept = max(range(stop + 1), key=lambda i: (scores[i], -i))
    first = next(i for i in range(stop + 1) if scores[i] >= 0.99 * scores[kept])
    return {"seed": curve["seed"], "twin": curve["twin"], "patience": patience, "stop_window": window,
            "stop_tolerance": tolerance, "epochs": stop + 1, "best_epoch": kept + 1, "valid_ndcg": scores[kept],
            "test_ndcg": curve["test"][kept], "ttq_cpu_s": curve["cpu"][first], "fit_cpu_s": curve["cpu"][stop]}


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per rule: medians and spreads over seeds (the plain fits), and the twins' mean |test difference|."""
    out = []
    for rule in dict.fromkeys((r["patience"], r["stop_window"], r["stop_tolerance"]) for r in rows):
        mine = [r for r in rows if (r["patience"], r["stop_window"], r["stop_tolerance"]) == rule]
        plain = [r for r in mine if not r["twin"]]
        pairs = [(a, b) for a in plain for b in mine if b["twin"] and b["seed"] == a["seed"]]
        valid, test = [r["valid_ndcg"] for r in plain], [r["test_ndcg"] for r in plain]
        out.append({"patience": rule[0], "stop_window": rule[1], "stop_tolerance": rule[2], "seeds": len(plain),
                    "valid_median": statistics.median(valid), "valid_spread": max(valid) - min(valid),
                    "test_median": statistics.median(test), "test_spread": max(test) - min(test),
                    "ttq_cpu_median": statistics.median(r["ttq_cpu_s"] for r in plain),
                    "fit_cpu_median": statistics.median(r["fit_cpu_s"] for r in plain),
                    "twin_test_diff": statistics.mean(abs(a["test_ndcg"] - b["test_ndcg"]) / a["test_ndcg"]
                                                      for a, b in pairs) if pairs else None})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED_DATA / "ml-latest-small"))
    ap.add_argument("--name", default="ml-latest-small")
    ap.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    ap.add_argument("--patience", type=int, default=60, help="the long fits' patience (the rules replay prefixes)")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="two-tower option")
    ap.add_argument("--replay", default=None, metavar="JSON", help="replay the curves of an earlier run only")
    args = ap.parse_args()
    if args.replay:
        curves = json.loads(Path(args.replay).read_text())["curves"]
    else:
        torch.set_num_threads(1)
        data = load_movielens(args.data)
        params = dict(kv.split("=", 1) for kv in args.param)
        curves = [fit_curve(data, seed, twin, args.patience, params) for seed in args.seeds for twin in (False, True)]
    rows = [replay(c, *rule) for rule in RULES for c in curves]
    table = summary(rows)
    write_results(f"stopping_{args.name}", {"data": args.data, "rules": RULES, "summary": table, "rows": rows,
                                           "curves": curves}, markdown_table(table) + "\n\n" + markdown_table(rows))
    print(markdown_table(table))


if __name__ == "__main__":
    main()
