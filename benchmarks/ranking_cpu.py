"""CPU throughput of the CTR rankers in plain PyTorch eager (the reference every faster backend
is measured against): training and inference samples/s per batch size, on 2 threads (and 1).

    python benchmarks/ranking_cpu.py           # batches 1/64/512/4096, 5 repeats
    python benchmarks/ranking_cpu.py --quick   # 2 repeats, shorter timing windows

Inputs are real Criteo rows (the 10k sample, encoded with min_freq=10: 13 dense, 26 sparse
features) cycled to fill each batch; models use the configs of ``ctr_accuracy.py`` for
Criteo. Inference: ``torch.inference_mode`` forward + sigmoid. Training: forward, BCE loss,
backward and a fused AdamW step (the trainer's inner loop). Each cell runs batches for a
fixed time window after a warm-up, repeated; we report the median samples/s and the median
per-batch latency (ms). One thread is measured too: on a shared 2-core machine, two intra-op
threads can be slower than one when another process holds a core (OpenMP waits for the
descheduled thread). Writes benchmarks/results/ranking_cpu.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from turborec.data.ctr import CTREncoder, read_criteo
from turborec.models.rankers import RankerNet, build_ranker

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "criteo-sample-10k" / "wideresdnn_criteo_train_sample.txt.gz"
RESULTS = ROOT / "benchmarks" / "results"
BATCHES = (1, 64, 512, 4096)
CONFIGS: dict[str, dict[str, Any]] = {
    "logreg": {},
    "dlrm": dict(embedding_dim=16, bottom_mlp=(), top_mlp=(32,), dropout=0.5),
    "dcnv2": dict(embedding_dim=8, n_cross=2, deep=(64,), structure="parallel", dropout=0.5),
    "deepfm": dict(embedding_dim=8, deep=(64, 32), dropout=0.0),
}


def _timed(step: Any, window_s: float, min_calls: int = 5) -> float:
    """Seconds per call of ``step`` over a window of at least ``min_calls`` calls."""
    calls, started = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - started < window_s:
        step()
        calls += 1
    return (time.perf_counter() - started) / calls


def measure(
    model: RankerNet, dense: np.ndarray, sparse: np.ndarray, batch: int, repeats: int, window: float
) -> dict[str, float]:
    rows = np.arange(batch * 4) % len(dense)  # 4 different batches, cycled through the real rows
    batches = [
        (
            torch.from_numpy(dense[rows[i * batch : (i + 1) * batch]]),
            torch.from_numpy(sparse[rows[i * batch : (i + 1) * batch]]),
        )
        for i in range(4)
    ]
    labels = torch.from_numpy((np.arange(batch) % 5 == 0).astype(np.float32))
    counter = {"i": 0}

    def infer() -> None:
        d, s = batches[counter["i"] % 4]
        counter["i"] += 1
        with torch.inference_mode():
            torch.sigmoid(model(d, s))

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    loss_fn = nn.BCEWithLogitsLoss()

    def train() -> None:
        d, s = batches[counter["i"] % 4]
        counter["i"] += 1
        loss = loss_fn(model(d, s), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    out: dict[str, float] = {}
    for mode, step in (("infer", infer), ("train", train)):
        model.train(mode == "train")
        _timed(step, window / 4, min_calls=3)  # warm-up
        per_call = [_timed(step, window) for _ in range(repeats)]
        med = statistics.median(per_call)
        out[f"{mode}_samples_per_s"] = batch / med
        out[f"{mode}_ms_per_batch"] = med * 1e3
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", default="2,1", help="comma-separated intra-op thread counts")
    parser.add_argument("--out", type=Path, default=RESULTS / "ranking_cpu.json")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    repeats, window = (2, 0.2) if args.quick else (5, 0.5)
    data = CTREncoder(min_freq=10, standardize=True).fit_transform(read_criteo(DATA))
    result: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "load_avg_1min_at_start": os.getloadavg()[0], "processor": platform.processor() or platform.machine()},
        "repeats": repeats, "window_s": window, "cardinalities": list(data.cardinalities), "runs": {},
    }  # fmt: skip
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        models: dict[str, Any] = {}
        for kind, config in CONFIGS.items():
            torch.manual_seed(0)
            model = build_ranker(kind, config, cardinalities=data.cardinalities, n_dense=data.n_dense)
            params = sum(p.numel() for p in model.parameters())
            models[kind] = {"parameters": params, "config": config, "batches": {}}
            for batch in BATCHES:
                cell = measure(model, data.dense, data.sparse, batch, repeats, window)
                models[kind]["batches"][str(batch)] = cell
                print(f"  {n_threads} thr {kind:7s} batch {batch:5d}: infer {cell['infer_samples_per_s']:>11,.0f}/s  "
                      f"train {cell['train_samples_per_s']:>9,.0f}/s", flush=True)  # fmt: skip
        result["runs"][str(n_threads)] = models
    result["machine"]["load_avg_1min_at_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    lines = ["### Rankers, PyTorch eager on CPU (Criteo shape: 13 dense, 26 sparse); median of "
             f"{repeats} windows of {window} s", "",
             "| threads | model | params | batch | inference samples/s | inference ms/batch | training samples/s | training ms/batch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for n_threads, models in result["runs"].items():
        for kind, m in models.items():
            for batch, c in m["batches"].items():
                lines.append(
                    f"| {n_threads} | {kind} | {m['parameters']:,} | {batch} | {c['infer_samples_per_s']:,.0f} | "
                    f"{c['infer_ms_per_batch']:.3f} | {c['train_samples_per_s']:,.0f} | {c['train_ms_per_batch']:.3f} |"
                )
    table = "\n".join(lines) + "\n"
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
