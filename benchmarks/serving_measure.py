"""Measurements benchmarks/serving.py takes of any server, turborec's or a peer's.

- ``start_timed``: start a server process and time it to its first 200 on a real request (cold start);
- ``tree_rss_mb``: resident memory of the server's whole process tree (Triton, LitServe and Ray run
  several processes; counting only the first would flatter them);
- ``back_to_normal_s``: after a storm, how long until every 250 ms window is back within the SLO
  with nothing refused or failed;
- ``plot_rate_p99``: every probe of every server, offered rate against p99 (log axes), a line through each
  rate's median.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from turborec.bench.process import stop_process


def start_timed(cmd: Sequence[str], url: str, path: str, body: bytes, *, env: Mapping[str, str] | None = None,
                timeout_s: float = 300.0, name: str = "the server") -> tuple[subprocess.Popen[bytes], float]:
    """Run ``cmd`` and POST ``body`` to ``url + path`` every 50 ms until it answers 200: (process, seconds from
    the process start to that first 200). Raises RuntimeError with the end of its stderr if it dies or
    does not answer within ``timeout_s``."""
    import httpx

    log = tempfile.TemporaryFile()  # noqa: SIM115  (closed below; the child keeps its own descriptor)
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                            env=dict(env) if env is not None else None, start_new_session=True)
    deadline = t0 + timeout_s
    last = ""
    try:
        with httpx.Client(timeout=5.0) as client:
            while time.perf_counter() < deadline:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"{name} exited: {log.read().decode(errors='replace')[-1500:]}")
                try:
                    r = client.post(url + path, content=body, headers={"content-type": "application/json"})
                    if r.status_code == 200:
                        return proc, time.perf_counter() - t0
                    last = f"HTTP {r.status_code}: {r.text[:300]}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.05)
        log.seek(0)
        raise RuntimeError(f"{name} gave no 200 in {timeout_s:.0f} s (last: {last}); stderr: "
                           f"{log.read().decode(errors='replace')[-800:]}")
    except BaseException:
        stop_tree(proc)
        raise
    finally:
        log.close()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out += [int(c) for c in text.split()]
    except OSError:
        pass
    return out


def tree_pids(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def tree_rss_mb(pid: int) -> float:
    """Resident set size summed over ``pid`` and all its descendants (MB; shared pages count once per process)."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def session_pids(sid: int) -> list[int]:
    """Every process of session ``sid`` (Ray's daemons leave the parent's tree but stay in its session)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    out.append(int(entry))
            except OSError:
                pass
    return out


def session_rss_mb(sid: int) -> float:
    total = 0
    for p in session_pids(sid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and whatever it started (its own session: started with ``start_new_session``)."""
    stop_process(proc)
    for pid in session_pids(proc.pid):
        with contextlib.suppress(OSError):
            os.kill(pid, 9)


def back_to_normal_s(result: Any, t_down: float, t_end: float, slo_ms: float, bin_s: float = 0.25) -> float:
    """Seconds after ``t_down`` until every later ``bin_s`` window (by scheduled time) has p99 <= SLO and no
    503s or errors (inf: never within the run)."""
    edges = np.arange(t_down, t_end + 1e-9, bin_s)
    good = []
    for lo in edges[:-1]:
        sel = (result.scheduled >= lo) & (result.scheduled < lo + bin_s)
        status = result.status[sel]
        ok = status == 200
        if not sel.any():
            good.append(True)
            continue
        p99 = float(np.percentile(result.latency[sel][ok] * 1000, 99)) if ok.any() else math.inf
        good.append(bool(ok.all()) and p99 <= slo_ms)
    for i in range(len(good)):
        if all(good[i:]):
            return float(i * bin_s)
    return math.inf


def plot_rate_p99(workloads: list[dict[str, Any]], slo_ms: float, path: Path) -> None:
    """One panel per workload: every probe of every server (offered rate, p99), log p99 axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(workloads), figsize=(6.5 * len(workloads), 4.6), squeeze=False)
    for ax, w in zip(axes[0], workloads):
        for row in w["variants"]:
            pts = sorted((p["rate"], p["p99_ms"]) for p in row.get("probes", []) if p["p99_ms"] == p["p99_ms"])
            if not pts:
                continue
            # every probe a dot; the line joins each rate's median (a rate probed again shows its spread)
            by_rate: dict[float, list[float]] = {}
            for x, y in pts:
                by_rate.setdefault(x, []).append(y)
            xs = sorted(by_rate)
            line, = ax.plot(xs, [float(np.median(by_rate[x])) for x in xs], lw=1.2, label=f"{row['variant']} "
                            f"({row['sustainable_rate']:,.0f} req/s)")
            ax.scatter(*zip(*pts), s=12, color=line.get_color(), alpha=0.7)
            if row.get("sustainable_rate"):
                ax.axvline(row["sustainable_rate"], color=line.get_color(), lw=0.6, ls=":")
        ax.axhline(w["slo_ms"], color="black", ls="--", lw=1, label=f"SLO p99 {w['slo_ms']:g} ms")
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlabel("offered rate (req/s, open loop)")
        ax.set_ylabel("p99 latency (ms)")
        ax.set_title(w["workload"])
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
