"""Cross-check turborec's `recbole` protocol numbers with RecBole itself (issue 16 item 4).

Runs RecBole 1.2.1 on ml-latest-small with the settings turborec's ``recbole`` protocol
claims to reproduce (ratings >= 3 kept, iterative 10-core on users and items, random
8:1:1 per user, full ranking with train -- and for test, valid -- items masked), for
Pop, BPR, EASE (its default reg_weight 250 and a reg_weight grid chosen on validation)
and the neural models MultiVAE and LightGCN (RecBole defaults, epochs capped). Writes
benchmarks/results/recbole_crosscheck.{json,md}.

It does not import turborec and runs in its OWN virtual environment (RecBole needs an
older numpy/scipy/pandas stack; the project's venv is not touched):

    python3 -m venv /tmp/recbole-venv
    /tmp/recbole-venv/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl \\
        "recbole==1.2.1" "numpy==1.26.4" "pandas==2.1.4" "scipy==1.11.4" "setuptools==80.9.0"
    # (on a machine without /opt/wheels: pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu)
    # pandas 3 / scipy 1.17 came in unpinned; pinned down to be safe with RecBole 1.2.1. setuptools < 81 because
    # RecBole imports ray 2.6, which imports pkg_resources (removed in setuptools 81); torch 2.13 wants >= 77.

    OMP_NUM_THREADS=1 nice -n 10 /tmp/recbole-venv/bin/python benchmarks/recbole_crosscheck.py  # all, ~15 CPU min
    OMP_NUM_THREADS=1 nice -n 10 /tmp/recbole-venv/bin/python benchmarks/recbole_crosscheck.py \\
        --models Pop EASE --seeds 2020        # a quick subset
    # the runs in docs/benchmarks.md ("RecBole on the same data") were per seed in parallel, then --combine

RecBole writes its checkpoints (and loads the best one back for the test evaluation) under
--work; torch >= 2.6 loads with ``weights_only=True`` by default, which RecBole 1.2.1's
checkpoints (they hold its Config) do not pass, so this script sets
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for its own, just-written checkpoints.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import torch  # imported after the environment variable above
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.general_recommender.pop import Pop
from recbole.utils import get_model, get_trainer, init_seed

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ml-latest-small" / "ratings.csv"
RESULTS = REPO / "benchmarks" / "results"
DATASET = "ml-latest-small"

# turborec's numbers on the same protocol (docs/benchmarks.md, "Retrieval accuracy"; test NDCG@10, seeds 2020-2022)
TURBOREC = {
    "popularity": [0.1135, 0.1098, 0.1132],
    "bpr": [0.2537, 0.2396, 0.2566],
    "ease (l2 chosen on validation)": [0.2654, 0.2498, 0.2659],
    "ease (l2 500, the old fixed default)": [0.2554, 0.2428, 0.2538],
    "two-tower (default)": [0.2339, 0.2265, 0.2418],
    "two-tower (EASE teacher, weight 0.15)": [0.2437, 0.2475, 0.2491],
}
TURBOREC_SPLIT = {"users": 603, "items": 1862, "interactions": 64760}

EASE_GRID = (50.0, 100.0, 200.0, 250.0, 300.0, 500.0, 800.0, 1200.0, 2000.0, 4000.0)
METRICS = ("ndcg@10", "recall@10", "hit@10", "mrr@10")


def write_atomic(work: Path) -> Path:
    """ratings.csv -> RecBole's atomic ``.inter`` file (tab-separated, typed header)."""
    folder = work / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{DATASET}.inter"
    with open(DATA, newline="") as src, open(path, "w") as dst:
        reader = csv.reader(src)
        header = next(reader)
        if header != ["userId", "movieId", "rating", "timestamp"]:
            raise SystemExit(f"unexpected header in {DATA}: {header}")
        dst.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for row in reader:
            dst.write("\t".join(row) + "\n")
    return path


def base_config(work: Path, seed: int, epochs: int) -> dict[str, object]:
    return {
        "data_path": str(work),
        "checkpoint_dir": str(work / "saved"),
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        "val_interval": {"rating": "[3,inf)"},
        "user_inter_num_interval": "[10,inf)",
        "item_inter_num_interval": "[10,inf)",
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"},
        "metrics": ["NDCG", "Recall", "Hit", "MRR"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "seed": seed,
        "reproducibility": True,
        "epochs": epochs,
        "worker": 0,
        "use_gpu": False,
        "gpu_id": "",
        "show_progress": False,
        "state": "WARNING",
    }


class PopCounted(Pop):  # type: ignore[misc]
    """RecBole's Pop with each training event counted (RecBole issue #2198, open in 1.2.1).

    Pop 1.2.1 adds 1 per item per *batch* (``cnt[item] = cnt[item] + 1`` drops duplicates in
    the index), so with 2,048-event batches its "popularity" is the number of batches an item
    appears in; this counts every event, as the fix in RecBole PR #2199 does.
    """

    def calculate_loss(self, interaction):  # type: ignore[no-untyped-def]
        item = interaction[self.ITEM_ID]
        self.item_cnt.index_add_(0, item, torch.ones_like(item).unsqueeze(1))
        self.max_cnt = torch.max(self.item_cnt, dim=0)[0]
        return torch.nn.Parameter(torch.zeros(1)).to(self.device)


def export_split(path: Path, dataset: object, parts: tuple[object, object, object]) -> None:
    """RecBole's split as raw ids: ``userId,movieId,part`` (0 train, 1 valid, 2 test), for turborec to refit on."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as out:
        out.write("userId,movieId,part\n")
        for k, part in enumerate(parts):
            feat = part._dataset.inter_feat  # type: ignore[attr-defined]
            users = dataset.id2token("user_id", feat["user_id"].numpy())  # type: ignore[attr-defined]
            items = dataset.id2token("item_id", feat["item_id"].numpy())  # type: ignore[attr-defined]
            out.writelines(f"{u},{i},{k}\n" for u, i in zip(users, items, strict=True))
    tmp.replace(path)


def run_one(
    model_name: str, work: Path, seed: int, epochs: int, extra: dict[str, object], export: Path | None = None
) -> dict[str, object]:
    """The sequence of recbole.quick_start.run_recbole, with the best-on-validation model tested."""
    torch.set_num_threads(1)
    model_arg = PopCounted if model_name == "PopCounted" else model_name
    config = Config(model=model_arg, dataset=DATASET, config_dict={**base_config(work, seed, epochs), **extra})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_class = model_arg if isinstance(model_arg, type) else get_model(config["model"])
    model = model_class(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    if export is not None:
        export_split(export / f"recbole_split_s{seed}.csv", dataset, (train_data, valid_data, test_data))
    t0, c0 = time.perf_counter(), time.process_time()
    _, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    stats = {
        "users": int(dataset.user_num - 1),  # RecBole's id 0 is [PAD]
        "items": int(dataset.item_num - 1),
        "interactions": int(dataset.inter_num),
        "train": len(train_data._dataset.inter_feat),
        "valid": len(valid_data._dataset.inter_feat),
        "test": len(test_data._dataset.inter_feat),
    }
    return {
        "model": model_name,
        "seed": seed,
        "params": extra,
        "valid": {k: float(v) for k, v in best_valid.items()},
        "test": {k: float(v) for k, v in test.items()},
        # epochs trained, and the one whose model was tested (early stopping counts evaluations since the best)
        "epochs_run": len(trainer.train_loss_dict),
        "best_epoch": len(trainer.train_loss_dict) - 1 - trainer.cur_step * config["eval_step"],
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu_s,
        "split": stats,
    }


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["Pop", "PopCounted", "BPR", "EASE", "MultiVAE", "LightGCN"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    ap.add_argument("--epochs", type=int, default=300, help="cap on training epochs (RecBole's default is 300)")
    ap.add_argument(
        "--ease-grid",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also choose EASE's reg_weight on validation from a grid",
    )
    ap.add_argument("--work", type=Path, default=Path("/tmp/recbole-crosscheck"))
    ap.add_argument("--name", default="recbole_crosscheck")
    ap.add_argument(
        "--export-splits",
        type=Path,
        default=None,
        help="also write RecBole's split per seed (recbole_split_s<seed>.csv) to this folder",
    )
    ap.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=JSON",
        help="override RecBole settings for every model run, e.g. learning_rate=0.01 (labels say so)",
    )
    ap.add_argument(
        "--combine",
        nargs="+",
        type=Path,
        default=None,
        help="no runs: build the table from the runs in these result JSONs (seeds run in parallel)",
    )
    args = ap.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config also reads the command line
    runs: list[dict[str, object]] = []
    if args.combine:
        for path in args.combine:
            runs += json.loads(path.read_text())["runs"]
        args.seeds = sorted({int(r["seed"]) for r in runs})  # type: ignore[call-overload]
        report(runs, args)
        return
    write_atomic(args.work)
    os.chdir(args.work)  # RecBole writes log_tensorboard/ into the working directory
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}

    def record(label: str, run: dict[str, object]) -> None:
        run["label"] = label
        runs.append(run)
        test = run["test"]
        print(
            f"seed {run['seed']} {label}: valid ndcg@10 {run['valid']['ndcg@10']:.4f} "  # type: ignore[index]
            f"test ndcg@10 {test['ndcg@10']:.4f} fit {run['fit_cpu_s']:.1f} CPU s "  # type: ignore[index]
            f"split {run['split']}",
            flush=True,
        )

    for seed in args.seeds:
        for name in args.models:
            if name == "EASE":
                record("EASE (reg_weight 250, RecBole default)", run_one("EASE", args.work, seed, 1, {}))
                if args.ease_grid:
                    grid = [run_one("EASE", args.work, seed, 1, {"reg_weight": w}) for w in EASE_GRID]
                    for r in grid:
                        r["label"] = f"EASE reg_weight {r['params']['reg_weight']:g}"  # type: ignore[index]
                    best = max(grid, key=lambda r: r["valid"]["ndcg@10"])  # type: ignore[index]
                    best["grid"] = [
                        {
                            "reg_weight": r["params"]["reg_weight"],
                            "valid_ndcg@10": r["valid"]["ndcg@10"],  # type: ignore[index]
                            "test_ndcg@10": r["test"]["ndcg@10"],
                        }  # type: ignore[index]
                        for r in grid
                    ]
                    record("EASE (reg_weight chosen on validation)", best)
            else:
                epochs = 1 if name.startswith("Pop") else args.epochs
                label = name + (f" ({', '.join(args.set)})" if args.set else "")
                record(label, run_one(name, args.work, seed, epochs, overrides, args.export_splits))
    report(runs, args)


def report(runs: list[dict[str, object]], args: argparse.Namespace) -> None:
    rows_by_label: dict[str, list[dict[str, object]]] = {}
    for run in sorted(runs, key=lambda r: r["seed"]):  # type: ignore[arg-type, return-value]
        rows_by_label.setdefault(str(run["label"]), []).append(run)
    rows = []
    for label, rs in rows_by_label.items():
        row: dict[str, object] = {"model": f"RecBole {label}"}
        row["test ndcg@10 per seed"] = " / ".join(f"{r['test']['ndcg@10']:.4f}" for r in rs)  # type: ignore[index]
        for m in METRICS:
            row[f"test {m}"] = round(median([r["test"][m] for r in rs]), 4)  # type: ignore[index]
        row["valid ndcg@10"] = round(median([r["valid"]["ndcg@10"] for r in rs]), 4)  # type: ignore[index]
        row["fit CPU s"] = round(median([r["fit_cpu_s"] for r in rs]), 2)  # type: ignore[misc]
        row["epochs run / best"] = " / ".join(f"{r['epochs_run']}:{r['best_epoch']}" for r in rs)
        if "reg_weight chosen" in label:
            row["model"] += " (" + " / ".join(f"{r['params']['reg_weight']:g}" for r in rs) + ")"  # type: ignore[index]
        rows.append(row)
    for label, vals in TURBOREC.items():
        rows.append(
            {
                "model": f"turborec {label}",
                "test ndcg@10 per seed": " / ".join(f"{v:.4f}" for v in vals),
                "test ndcg@10": round(median(vals), 4),
            }
        )
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    splits = {r["seed"]: r["split"] for r in runs}
    first = next(iter(splits.values()))
    split_line = (
        f"RecBole's split after filtering: {first['users']} users, {first['items']} items, "  # type: ignore[index]
        f"{first['interactions']} interactions (turborec: {TURBOREC_SPLIT['users']} users, "  # type: ignore[index]
        f"{TURBOREC_SPLIT['items']} items, {TURBOREC_SPLIT['interactions']} interactions); "
        "train/valid/test per seed: "
        + "; ".join(f"{s}: {v['train']}/{v['valid']}/{v['test']}" for s, v in splits.items())
    )  # type: ignore[index]
    md = "\n".join(lines) + "\n\n" + split_line + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps(
            {
                "data": str(DATA),
                "recbole": __import__("recbole").__version__,
                "python": sys.version.split()[0],
                "seeds": args.seeds,
                "epochs_cap": args.epochs,
                "threads": 1,
                "rows": rows,
                "runs": runs,
                "turborec": TURBOREC,
                "turborec_split": TURBOREC_SPLIT,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
