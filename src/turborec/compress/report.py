"""Measuring compressed variants against their teacher: bytes, resident memory, accuracy, CPU latency.

Every variant is a saved artifact, measured the way a server would meet it:

- bytes: the weights split into tables / layers (what compression shrinks) and data buffers
  (integer inputs a net carries, e.g. per-item feature tokens), from the loaded model
  (:func:`net_memory`); the artifact's size on disk (which also holds the user histories and
  vocabularies: data, the same for every variant of one dataset);
- resident memory: what loading the artifact adds to a fresh process that has already imported
  the loader's modules (:func:`measure_load_rss` with :data:`PRELOAD`): the weights, the user
  histories and vocabularies, and the allocator's overhead;
- accuracy: a caller-supplied metric (NDCG@10 on a test split, AUC on labelled rows);
- latency: the median wall time of one CPU batch (a caller-supplied call), after warm-up, timed
  round-robin across the variants.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from turborec.compress.memory import measure_load_rss, net_memory

LOADER = "turborec.compress:load"
# what turborec.compress.load imports lazily: imported before the resident-memory baseline
PRELOAD = ("turborec.train", "turborec.train.ctr", "turborec.models.rankers", "turborec.models.compact",
           "turborec.models.compact_linear", "safetensors.torch", "scipy.sparse")  # fmt: skip


@dataclass(frozen=True)
class VariantReport:
    name: str
    tables_bytes: int
    layers_bytes: int
    data_bytes: int
    disk_bytes: int
    rss_bytes: int | None
    metric_name: str
    metric: float | None
    latency_ms: float
    transforms: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def model_bytes(self) -> int:
        return self.tables_bytes + self.layers_bytes


def disk_bytes(path: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def median_ms(call: Callable[[], object], repeats: int = 30, warmup: int = 3) -> float:
    """Median wall time of ``call()`` in milliseconds."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return float(statistics.median(times))


def net_of(model: Any) -> nn.Module:
    """The network inside a loaded estimator (``.net``) or ranker (``.model``)."""
    net = getattr(model, "net", None) or getattr(model, "model", None)
    if not isinstance(net, nn.Module):
        raise TypeError(f"{type(model).__name__} holds no network")
    return net


def measure_variants(
    variants: Sequence[tuple[str, str | Path, str]],
    *,
    metric_name: str,
    evaluate: Callable[[Any], float] | None,
    batch: Callable[[Any], object],
    rounds: int = 30,
    rss: bool = True,
) -> list[VariantReport]:
    """Load each ``(name, artifact path, note)`` with :func:`turborec.compress.load` and measure it.

    Latency is timed round-robin (one call of every variant per round, ``rounds`` rounds, after
    warm-up) so that a machine's changing load falls on every variant alike; each variant's median
    is reported.
    """
    from turborec.compress._netwalk import transform_records
    from turborec.compress.estimator import load

    models = [load(path) for _, path, _ in variants]
    for model in models:  # warm-up: first calls pack kernels and fill caches
        for _ in range(3):
            batch(model)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for i, model in enumerate(models):
            start = time.perf_counter()
            batch(model)
            times[i].append((time.perf_counter() - start) * 1e3)
    reports = []
    for (name, path, note), model, spent in zip(variants, models, times):
        net = net_of(model)
        mem = net_memory(net)
        records = getattr(model, "transforms", None)
        reports.append(VariantReport(
            name=name,
            tables_bytes=mem.tables,
            layers_bytes=mem.layers,
            data_bytes=mem.data,
            disk_bytes=disk_bytes(path),
            rss_bytes=measure_load_rss(path, LOADER, preload=PRELOAD).added if rss else None,
            metric_name=metric_name,
            metric=None if evaluate is None else float(evaluate(model)),
            latency_ms=float(statistics.median(spent)),
            transforms=[_describe(r) for r in (transform_records(net) if records is None else records)],
            note=note,
        ))  # fmt: skip
    return reports


def _describe(record: dict[str, Any]) -> str:
    name = str(record.get("transform"))
    if name == "quantize_embeddings":
        return f"tables {record.get('kind')}"
    if name == "quantize_mlp_dynamic":
        return "mlp int8"
    if name == "prune_neurons":
        return f"prune {record.get('amount')}"
    return name


# ------------------------------------------------------------------ output
def _kb(n: int | None) -> str:
    return "—" if n is None else f"{n / 1024:,.1f}"


def _times(ref: float | None, value: float | None) -> str:
    return "—" if not ref or not value else f"{ref / value:.1f}x"


def markdown_table(reports: Sequence[VariantReport], reference: str | None = None) -> str:
    """One row per variant; ratios against ``reference`` (default: the first row)."""
    if not reports:
        return "(no variants)"
    ref = next((r for r in reports if r.name == reference), reports[0])
    metric = ref.metric_name
    lines = [
        f"| variant | weights KB (tables + layers) | smaller | tables KB | tables smaller | data KB | disk KB "
        f"| RSS added MB | {metric} | vs {ref.name} | batch ms | faster |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        share = "—" if r.metric is None or not ref.metric else f"{100 * r.metric / ref.metric:.1f}%"
        rss = "—" if r.rss_bytes is None else f"{r.rss_bytes / 2**20:.1f}"
        value = "—" if r.metric is None else f"{r.metric:.4f}"
        lines.append(
            f"| {r.name} | {_kb(r.model_bytes)} | {_times(ref.model_bytes, r.model_bytes)} | {_kb(r.tables_bytes)} "
            f"| {_times(ref.tables_bytes, r.tables_bytes)} | {_kb(r.data_bytes)} | {_kb(r.disk_bytes)} | {rss} "
            f"| {value} | {share} | {r.latency_ms:.2f} | {_times(ref.latency_ms, r.latency_ms)} |"
        )
    return "\n".join(lines)


def plot_reports(reports: Sequence[VariantReport], path: str | Path, title: str, reference: str | None = None) -> Path:
    """Accuracy (relative to the reference) and batch latency against weight bytes, one point per variant."""
    from turborec._util.optional import require

    require("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = next((r for r in reports if r.name == reference), reports[0])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for i, r in enumerate(reports):
        kb = r.model_bytes / 1024
        nudge = (4, 8 * (i % 3) - 6)  # staggered labels stay readable where points coincide
        if r.metric is not None and ref.metric:
            left.scatter(kb, 100 * r.metric / ref.metric, s=36)
            left.annotate(r.name, (kb, 100 * r.metric / ref.metric), fontsize=7, xytext=nudge,
                          textcoords="offset points")  # fmt: skip
        right.scatter(kb, r.latency_ms, s=36)
        right.annotate(r.name, (kb, r.latency_ms), fontsize=7, xytext=nudge, textcoords="offset points")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("weights (tables + layers), KB, log scale")
        ax.grid(True, alpha=0.3)
    left.set_ylabel(f"{ref.metric_name}, % of {ref.name}")
    left.axhline(100, color="grey", lw=0.8)
    right.set_ylabel("CPU ms per batch (median, 1 thread)")
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_report(
    reports: Sequence[VariantReport], out_dir: str | Path, title: str, name: str = "compression",
    reference: str | None = None,
) -> tuple[Path, Path, Path]:
    """``<name>.md`` (title + table), ``<name>.json`` and ``<name>.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"{name}.md"
    md.write_text(f"## {title}\n\n{markdown_table(reports, reference)}\n", encoding="utf-8")
    js = out / f"{name}.json"
    js.write_text(json.dumps([{**asdict(r), "model_bytes": r.model_bytes} for r in reports], indent=1), encoding="utf-8")
    png = plot_reports(reports, out / f"{name}.png", title, reference)
    return md, js, png


__all__ = [
    "LOADER",
    "PRELOAD",
    "VariantReport",
    "disk_bytes",
    "markdown_table",
    "measure_variants",
    "median_ms",
    "net_of",
    "plot_reports",
    "write_report",
]
