"""`turborec predict` on a 1M-row synthetic CTR file: rows/s and peak resident memory, one torch thread.

    python benchmarks/predict.py                 # 1M rows, DCN-V2, 3 repeats
    python benchmarks/predict.py --rows 200000   # quicker

The file is written to a temporary folder (never into the repository): the synthetic click
model's rows (8 categorical features of 10-500 values, 4 dense, as in benchmarks/ctr_accuracy.py)
as Parquet and as CSV. A DCN-V2 is trained on 100k other rows of the same generator with the CTR
recipe (turborec.train.ctr_recipe) and saved. Each repeat then runs the real command in a fresh
process (repeats take turns with the other format and the baseline, so that all see the same load)::

    turborec predict RUN --data rows.parquet --format parquet --out scores.parquet --threads 1 -q

and we record its wall time (whole process: interpreter start, imports, artifact load, read,
encode, score, write), the scoring time it reports itself (from the artifact loaded to the last
row written) and its peak RSS (``ru_maxrss`` of the child). Baseline, in a fresh process too:
plain-torch batch scoring of the same rows already encoded and held in memory (the net's forward
over 8,192-row batches under ``inference_mode``), i.e. the model's own cost with no I/O.

Writes benchmarks/results/predict.json and predict.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VOCAB = (10, 20, 50, 100, 200, 300, 500, 10)


def _frame(n_rows: int) -> Any:
    import pandas as pd

    from turborec.data.ctr import SyntheticCTRConfig, synthetic_ctr

    data = synthetic_ctr(SyntheticCTRConfig(n_rows=n_rows, vocab_sizes=VOCAB, seed=0)).data
    assert data.label is not None
    frame = pd.DataFrame({"label": data.label.astype(np.int8)})
    for i in range(data.n_dense):
        frame[f"d{i}"] = data.dense[:, i]
    for j in range(data.n_sparse):
        frame[f"c{j}"] = data.sparse[:, j].astype(str)
    return frame


def _raw(frame: Any) -> Any:
    from turborec.data.ctr import RawCTR

    dense = [c for c in frame.columns if c.startswith("d")]
    sparse = [c for c in frame.columns if c.startswith("c")]
    return RawCTR(frame[dense].to_numpy(np.float64), frame[sparse].to_numpy(object),
                  frame["label"].to_numpy(np.float32), tuple(dense), tuple(sparse), "synthetic")  # fmt: skip


def prepare(folder: Path, rows: int) -> dict[str, Any]:
    from turborec.train.ctr_recipe import ctr_recipe, save_ctr_run, train_ctr

    started = time.perf_counter()
    frame = _frame(rows + 100_000)  # the last 100k rows train the model, the others are scored
    recipe = ctr_recipe("dcnv2", "criteo", {"epochs": "2", "eval_every": "100", "min_freq": "1"}, seed=0)
    run = train_ctr(_raw(frame.iloc[rows:].reset_index(drop=True)), recipe)
    save_ctr_run(folder / "dcnv2", run)
    frame = frame.iloc[:rows]
    frame.to_parquet(folder / "rows.parquet", index=False)
    frame.to_csv(folder / "rows.csv", index=False)
    return {"rows": rows, "model_test_auc": run.metrics["auc"], "prepare_seconds": time.perf_counter() - started,
            "parquet_mb": (folder / "rows.parquet").stat().st_size / 1e6,
            "csv_mb": (folder / "rows.csv").stat().st_size / 1e6}  # fmt: skip


# runs a command, then prints its output, its wall time and its peak RSS (KB) as the last line
_WRAPPER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t0
print(proc.stdout + proc.stderr)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": proc.returncode, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_kb": usage.ru_maxrss}))
"""


def _measured(cmd: list[str]) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS MB, output) of ``cmd`` in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True, env=env, check=True)
    *body, last = proc.stdout.strip().splitlines()
    stats = json.loads(last)
    if stats["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n" + "\n".join(body))
    return stats["wall"], stats["cpu"], stats["rss_kb"] / 1024, "\n".join(body)


def predict_once(folder: Path, fmt: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "turborec.cli.main", "predict", str(folder / "dcnv2"), "--data",
           str(folder / f"rows.{fmt}"), "--format", fmt, "--out", str(folder / "scores.parquet"),
           "--threads", "1"]  # fmt: skip
    wall, cpu, peak, out = _measured(cmd)
    match = re.search(r"wrote ([\d,]+) probabilities .* in ([\d.]+)s, ([\d.]+) CPU s", out)
    assert match, out
    return {"rows": int(match.group(1).replace(",", "")), "wall": wall, "cpu": cpu, "scoring": float(match.group(2)),
            "scoring_cpu": float(match.group(3)), "rss_mb": peak}  # fmt: skip


def predict_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = runs[0]["rows"]
    walls, cpus = [r["wall"] for r in runs], [r["cpu"] for r in runs]
    scoring, scoring_cpu = [r["scoring"] for r in runs], [r["scoring_cpu"] for r in runs]
    return {"rows": rows, "wall_s": walls, "cpu_s": cpus, "scoring_s": scoring, "scoring_cpu_s": scoring_cpu,
            "peak_rss_mb": max(r["rss_mb"] for r in runs), "rows_per_s_wall": rows / statistics.median(walls),
            "rows_per_s_scoring": rows / statistics.median(scoring),
            "rows_per_cpu_s_scoring": rows / statistics.median(scoring_cpu),
            "rows_per_cpu_s_process": rows / statistics.median(cpus)}  # fmt: skip


BASELINE = """
import json, sys, time, resource
import numpy as np, pandas as pd, torch
torch.set_num_threads(1)
from turborec.data.ctr import RawCTR
from turborec.train.ctr import load_ranker
ranker = load_ranker(sys.argv[1])
frame = pd.read_parquet(sys.argv[2])
dense = [c for c in frame.columns if c.startswith("d")]
sparse = [c for c in frame.columns if c.startswith("c")]
raw = RawCTR(frame[dense].to_numpy(np.float64), frame[sparse].to_numpy(object), None, tuple(dense), tuple(sparse))
data = ranker.encoder.transform(raw)
del frame, raw
model = ranker.model.eval()
d, s = torch.from_numpy(data.dense), torch.from_numpy(data.sparse)
out = torch.empty(len(d))
t0, c0 = time.perf_counter(), time.process_time()
with torch.inference_mode():
    for i in range(0, len(d), 8192):
        out[i:i + 8192] = torch.sigmoid(model(d[i:i + 8192], s[i:i + 8192]))
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"seconds": seconds, "cpu": cpu, "rows": len(d),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def baseline_once(folder: Path) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", BASELINE, str(folder / "dcnv2"), str(folder / "rows.parquet")],
                          capture_output=True, text=True, env=env, check=True)  # fmt: skip
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def baseline_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds, cpu = [r["seconds"] for r in runs], [r["cpu"] for r in runs]
    n = runs[0]["rows"]
    return {"rows": n, "scoring_s": seconds, "scoring_cpu_s": cpu, "rows_per_s_scoring": n / statistics.median(seconds),
            "rows_per_cpu_s_scoring": n / statistics.median(cpu), "peak_rss_mb": max(r["rss_mb"] for r in runs)}  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"{result['setup']['rows']:,} synthetic rows (4 dense + 8 categorical), DCN-V2 (the CLI's criteo preset: "
        f"16-d embeddings, 1 cross layer, 128-64 MLP), 1 torch thread, median of {result['repeats']} runs, each in "
        "a fresh process; the runs of the three rows take turns (one of each per round).",
        "",
        "| what | rows per CPU-second (scoring) | rows/s wall (scoring) | rows/s wall (whole process) | peak RSS MB |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in ("parquet", "csv"):
        r = result[name]
        lines.append(f"| `turborec predict --format {name}` | {r['rows_per_cpu_s_scoring']:,.0f} | "
                     f"{r['rows_per_s_scoring']:,.0f} | {r['rows_per_s_wall']:,.0f} | {r['peak_rss_mb']:,.0f} |")  # fmt: skip
    b = result["baseline"]
    lines.append(f"| baseline: plain torch on the rows already encoded in memory | {b['rows_per_cpu_s_scoring']:,.0f} "
                 f"| {b['rows_per_s_scoring']:,.0f} | — | {b['peak_rss_mb']:,.0f} |")  # fmt: skip
    lines += ["", "Scoring: from the artifact loaded to the last score written (read, parse, encode, score, write); "
              "whole process: interpreter start and imports included. Rows per CPU-second is the one-core rate on a "
              "machine shared with other work (wall-clock rates then measure the neighbours too). The baseline "
              "holds every row in memory and only runs the net."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "predict.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="turborec-predict-") as tmp:
        folder = Path(tmp)
        result: dict[str, Any] = {
            "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()},
            "repeats": args.repeats,
            "setup": prepare(folder, args.rows),
        }
        # one round = one run of each, so all three see the same neighbours on a shared machine
        runs: dict[str, list[dict[str, Any]]] = {"parquet": [], "csv": [], "baseline": []}
        for round_ in range(args.repeats):
            for fmt in ("parquet", "csv"):
                runs[fmt].append(predict_once(folder, fmt))
            runs["baseline"].append(baseline_once(folder))
            print(f"round {round_ + 1}:", json.dumps({k: v[-1] for k, v in runs.items()}), flush=True)
        result["parquet"], result["csv"] = predict_summary(runs["parquet"]), predict_summary(runs["csv"])
        result["baseline"] = baseline_summary(runs["baseline"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    table = markdown(result)
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
