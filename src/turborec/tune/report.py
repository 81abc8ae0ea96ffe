"""The tuning report: every candidate (measured or why not), the Pareto fronts as PNG, a summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from turborec.tune.objective import Constraints
from turborec.tune.pareto import ACCURACY_VS_MEMORY, ACCURACY_VS_P99, OperatingPoint, pareto_front
from turborec.tune.results import MEASURED, Record, TuneResult

P99_PLOT = "tune_accuracy_vs_p99.png"
MEMORY_PLOT = "tune_accuracy_vs_memory.png"


def _ms(v: float | None) -> str:
    return "-" if v is None else ("inf" if math.isinf(v) else f"{v:.2f}")


def limits_line(point: OperatingPoint, constraints: Constraints) -> str:
    """What keeps ``point`` out, with a hint of why (a slow median is the model; a slow tail is queueing)."""
    why = constraints.violations(point)
    if any(w.startswith("p99") for w in why) and math.isfinite(point.p50_ms):
        hint = ("even the median is over the SLO: the model or machine is too slow at this rate"
                if point.p50_ms > constraints.slo_p99_ms else "the median is within the SLO: the tail is queueing")
        why = [*why, f"p50 {point.p50_ms:.2f} ms, {hint}"]
    return "; ".join(why)


def summary(result: TuneResult) -> str:
    """A few lines for the terminal: the choice, or why there is none and what came closest."""
    c = result.constraints
    opts = result.options
    head = (f"tune: {len(result.measured())} points measured, {len(result.records) - len(result.measured())} "
            f"skipped or unsupported, in {result.elapsed_s / 60:.1f} min (budget {opts.budget_s / 60:g} min); "
            f"SLO p99 <= {c.slo_p99_ms:g} ms at {opts.rate:g} req/s")
    if c.min_accuracy is not None:
        head += f", NDCG@10 >= {c.min_accuracy:.4f}"
    if c.memory_mb is not None:
        head += f", memory <= {c.memory_mb:g} MB"
    chosen = result.chosen
    if chosen is not None:
        http = f", HTTP p99 {_ms(chosen.http.p99_ms)} ms" if chosen.http is not None else " (not confirmed over HTTP)"
        lines = [head, f"chosen: {chosen.key}: NDCG@10 {chosen.accuracy:.4f} "
                       f"({(chosen.accuracy or 0) / max(result.reference_accuracy, 1e-12):.1%} of the reference), "
                       f"p99 {_ms(chosen.stats.p99_ms if chosen.stats else None)} ms in-process{http}, "
                       f"{chosen.memory_mb:.2f} MB"]
        if result.artifact:
            lines.append(f"saved {result.artifact}")
        return "\n".join(lines)
    confirmed = [r for r in result.records if r.http is not None]
    in_process = [p for p in result.points() if c.feasible(p)]
    lines = [head]
    if in_process or confirmed:
        lines.append(f"{len(in_process)} point(s) met the SLO in-process; {len(confirmed)} tried over HTTP, none held")
    lines.append("no configuration meets the constraints. Closest:")
    reasons = {r.key: r.reason for r in result.records}
    for point, _ in result.selection.closest:
        why = limits_line(point, c) or reasons.get(point.key) or "met the SLO in-process; not confirmed over HTTP"
        lines.append(f"  {point.key}: NDCG@10 {point.accuracy:.4f}: {why}")
    if not result.selection.closest:
        lines.append("  (nothing was measured: see the report for why each candidate was skipped)")
    return "\n".join(lines)


def write_report(result: TuneResult, out: Path, *, plots: bool = True) -> list[Path]:
    """points.json, report.md and the two Pareto plots in ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "points.json", out / "report.md"]
    (out / "points.json").write_text(json.dumps(to_json(result), indent=1, default=_json_default))
    if plots:
        written += plot_fronts(result, out)
    (out / "report.md").write_text(markdown(result, [p.name for p in written if p.suffix == ".png"]))
    return written


def to_json(result: TuneResult) -> dict[str, Any]:
    c = result.constraints
    chosen = result.chosen
    return {
        "constraints": {"slo_p99_ms": c.slo_p99_ms, "min_ndcg@10": c.min_accuracy, "memory_mb": c.memory_mb},
        "rate": result.options.rate, "objective": result.options.objective,
        "budget_s": result.options.budget_s, "elapsed_s": result.elapsed_s,
        "reference_ndcg@10": result.reference_accuracy, "chosen": chosen.key if chosen else None,
        "artifact": result.artifact, "notes": result.notes, "exit_code": result.exit_code,
        "front_accuracy_vs_p99": [p.key for p in pareto_front(result.points(), ACCURACY_VS_P99)],
        "front_accuracy_vs_memory": [p.key for p in pareto_front(result.points(), ACCURACY_VS_MEMORY)],
        "points": [r.to_dict() for r in result.records],
    }


def _json_default(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else obj
    return str(obj)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(r: Record, c: Constraints, front: set[str], chosen: str | None, confirming: bool) -> str:
    p = r.point()
    if p is None or not c.feasible(p):
        ok = "no (HTTP)" if r.http is not None and r.stats is not None and r.stats.p99_ms <= c.slo_p99_ms else "no"
    else:
        ok = "yes, over HTTP" if r.http is not None else ("in-process only" if confirming else "yes")
    mark = " **(chosen)**" if r.key == chosen else (" (front)" if r.key in front else "")
    s, h = r.stats, r.http
    return (f"| {_cell(r.key)}{mark} | {r.candidate.stage} | {r.accuracy:.4f} | {_ms(s.p50_ms if s else None)} | "
            f"{_ms(s.p99_ms if s else None)} | {_ms(h.p99_ms if h else None)} | {r.memory_mb:.2f} | {ok} | "
            f"{_cell(r.reason)} |")


def markdown(result: TuneResult, images: list[str]) -> str:
    c = result.constraints
    chosen = result.chosen.key if result.chosen else None
    front = {p.key for p in pareto_front(result.points(), ACCURACY_VS_P99)}
    lines = ["# turborec tune report", "", "```", summary(result), "```", ""]
    lines += [f"Reference model (uncompressed, eager, exact scoring): NDCG@10 {result.reference_accuracy:.4f} on "
              "the validation split. Latency: the recorded request mix replayed open-loop at the target rate "
              "through the service (micro-batching, admission), from each request's scheduled time; shed or "
              "lost requests count as infinitely slow. HTTP p99: the same mix against a real server on "
              "127.0.0.1 from the load generator in its own process.", ""]
    for name in images:
        lines += [f"![{name}]({name})", ""]
    lines += ["## Measured points", "",
              "| configuration (model · backend · index · batching) | stage | NDCG@10 | p50 ms | p99 ms | "
              "HTTP p99 ms | memory MB | meets all | note |",
              "|---|---|---|---|---|---|---|---|---|"]
    confirming = result.options.confirm_top > 0
    lines += [_row(r, c, front, chosen, confirming) for r in result.records if r.status == MEASURED]
    others = [r for r in result.records if r.status != MEASURED]
    if others:
        lines += ["", "## Not measured", "", "| configuration | stage | status | why |", "|---|---|---|---|"]
        lines += [f"| {_cell(r.key)} | {r.candidate.stage} | {r.status} | {_cell(r.reason)} |" for r in others]
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def plot_fronts(result: TuneResult, out: Path) -> list[Path]:
    chosen = result.chosen.key if result.chosen else None
    return plot_points(result.points(), result.constraints, chosen, result.options.rate, out)


def plot_points(points: list[OperatingPoint], c: Constraints, chosen: str | None, rate: float,
                out: Path) -> list[Path]:
    """Accuracy against p99 (log axis, the SLO as a line) and against memory: every point numbered,
    the numbers keyed to configurations under the axes, the Pareto front stepped, the chosen plan ringed.
    A point confirmed over HTTP is drawn at its HTTP p99, joined to its in-process p99 by a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    finite_p99 = [p for p in points if math.isfinite(p.p99_ms)]
    ordered = sorted(points, key=lambda p: (-p.accuracy, p.p99_ms))  # 1 = most accurate
    number = {id(p): i for i, p in enumerate(ordered, 1)}
    key_lines = [f"{number[id(p)]:>2}  {p.key}" + ("   <- chosen" if p.key == chosen else "") for p in ordered]
    stages = sorted({str(p.config.get("stage", "")) for p in points})
    colors = {stage: f"C{i % 10}" for i, stage in enumerate(stages)}
    paths = []
    for attr, objectives, name, label, limit, limit_label, unit in (
        ("p99_ms", ACCURACY_VS_P99, P99_PLOT, "p99 latency (ms, log scale; HTTP p99 where confirmed)", c.slo_p99_ms,
         "SLO p99", "ms"),
        ("memory_mb", ACCURACY_VS_MEMORY, MEMORY_PLOT, "memory (MB, weights + index)", c.memory_mb, "memory cap", "MB"),
    ):
        rows = (len(key_lines) + 1) // 2
        height = 4.8 + 0.13 * rows + 0.3
        key_h = (0.13 * rows + 0.3) / height  # share of the figure under the axes for the numbered key
        fig = plt.figure(figsize=(10.0, height))
        ax = fig.add_axes((0.09, key_h + 0.1 * 4.8 / height, 0.64, 0.8 * 4.8 / height))
        finite = [p for p in points if math.isfinite(p.value(attr))]
        for stage, color in colors.items():  # one colour per stage in both plots
            sel = [p for p in finite if p.config.get("stage", "") == stage]
            if sel:
                ax.scatter([p.value(attr) for p in sel], [p.accuracy for p in sel], s=30, alpha=0.85, label=stage,
                           color=color, zorder=3)
        if attr == "p99_ms":
            _in_process_to_http(ax, finite)
        lost = [p for p in points if not math.isfinite(p.value(attr))]
        edge = 2.0 * max([p.value(attr) for p in finite] + [limit or 1.0])
        if lost:  # shed / lost requests: drawn at the right edge, not dropped
            ax.scatter([edge] * len(lost), [p.accuracy for p in lost], marker="x", color="gray", zorder=3,
                       label=f"p99 inf (>1% shed/lost), drawn at {edge:.3g} {unit}")
        front = pareto_front(finite, objectives)
        ax.step([p.value(attr) for p in front], [p.accuracy for p in front], where="post", color="black", lw=1,
                label="Pareto front", zorder=2)
        ring = None
        for p in finite:
            if p.key == chosen:
                ring = (p.value(attr), p.accuracy)
                ax.scatter([ring[0]], [ring[1]], s=200, facecolors="none", edgecolors="red", lw=2,
                           label=f"chosen ({number[id(p)]})", zorder=4)
        if limit is not None:
            ax.axvline(limit, color="tab:red", ls="--", lw=1.2, label=f"{limit_label} {limit:g} {unit}")
        if c.min_accuracy is not None:
            ax.axhline(c.min_accuracy, color="tab:green", ls=":", lw=1, label=f"accuracy floor {c.min_accuracy:.3f}")
        if attr == "p99_ms" and (finite_p99 or limit):
            ax.set_xscale("log")  # outliers (a 200 ms point) no longer squash every candidate into one column
            # plain numbers ("20", not "2x10^1"), denser steps when the points span less than a few decades
            shown = [v for v in [*(p.p99_ms for p in finite_p99), limit, edge if lost else None] if v]
            decades = math.log10(max(shown) / min(shown)) if shown else 3.0
            subs = ((1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0) if decades <= 1.0
                    else (1.0, 2.0, 3.0, 5.0, 7.0) if decades <= 2.5 else (1.0, 2.0, 5.0))
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.08, y=0.12)
        ax.set_xlabel(label)
        ax.set_ylabel("NDCG@10 (validation)")
        verdict = "" if chosen is not None else ": no configuration met the constraints"
        ax.set_title(f"turborec tune: accuracy vs {label.split(' (')[0]} at {rate:g} req/s{verdict}", fontsize=10)
        ax.grid(True, which="major", alpha=0.25)
        xy = [(p.value(attr) if math.isfinite(p.value(attr)) else edge, p.accuracy) for p in points]
        _number_points(ax, xy, [number[id(p)] for p in points], ring)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        half = (len(key_lines) + 1) // 2
        for col, chunk in enumerate((key_lines[:half], key_lines[half:])):
            fig.text(0.01 + 0.5 * col, key_h - 0.01, "\n".join(chunk), fontsize=6.5, family="monospace", va="top")
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)
    return paths


def _in_process_to_http(ax: Any, points: list[OperatingPoint]) -> None:
    """For points confirmed over HTTP: a hollow marker at the in-process p99, dotted to the HTTP p99 drawn."""
    pairs = [(float(p.config["in_process_p99_ms"]), p.p99_ms, p.accuracy) for p in points
             if math.isfinite(float(p.config.get("in_process_p99_ms", math.nan)))]
    for i, (inproc, http, acc) in enumerate(pairs):
        ax.plot([inproc, http], [acc, acc], ls=":", color="gray", lw=1, zorder=1)
        ax.scatter([inproc], [acc], s=30, facecolors="none", edgecolors="gray", zorder=2,
                   label="in-process p99 ... HTTP p99" if i == 0 else None)


def _spans(numbers: list[int]) -> str:
    """1,2,3,5 -> '1-3,5'."""
    out: list[str] = []
    for n in sorted(numbers):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ",".join(out)


def _overlap(box: tuple[float, float, float, float], others: list[tuple[float, float, float, float]]) -> float:
    """Area of ``box`` covered by ``others`` (boxes as x0, y0, x1, y1)."""
    return sum(max(0.0, min(box[2], o[2]) - max(box[0], o[0])) * max(0.0, min(box[3], o[3]) - max(box[1], o[1]))
               for o in others)


def _number_points(ax: Any, xy: list[tuple[float, float]], numbers: list[int],
                   ring: tuple[float, float] | None) -> None:
    """Each point's number beside it, without overlaps: points that coincide on the figure share one label
    ('2-5'); a label goes to the first free spot around its point (right, below, left, then further up or
    down, with a thin leader line), clear of other labels, of the points and of the chosen plan's ring."""
    ax.get_xlim()  # settle the autoscaled limits so data -> display is final
    to_pt = 72.0 / ax.figure.dpi
    where = [tuple(v * to_pt for v in ax.transData.transform(p)) for p in xy]
    groups: list[tuple[tuple[float, float], tuple[float, float], list[int]]] = []
    for data, shown, n in sorted(zip(xy, where, numbers), key=lambda t: (t[1][0], -t[1][1])):
        same = next((g for g in groups if abs(g[1][0] - shown[0]) < 2 and abs(g[1][1] - shown[1]) < 2), None)
        if same is None:
            groups.append((data, shown, [n]))
        else:
            same[2].append(n)
    boxes: list[tuple[float, float, float, float]] = [(x - 3, y - 3, x + 3, y + 3) for x, y in where]
    if ring is not None:
        rx, ry = (v * to_pt for v in ax.transData.transform(ring))
        boxes.append((rx - 8, ry - 8, rx + 8, ry + 8))
    size = 7.0
    for data, (x, y), ns in groups:
        text = _spans(ns)
        w, h = 0.6 * size * len(text) + 1, size + 1
        tries = [(4.0, 2.0), (4.0, -h - 2), (-w - 4, 2.0), (-w - 4, -h - 2)]
        tries += [(4.0, s * (2 + k * (h + 1))) for k in range(1, 8) for s in (1, -1)]
        spots = [(x + dx, y + dy, x + dx + w, y + dy + h) for dx, dy in tries]
        clashes = [_overlap(spot, boxes) for spot in spots]
        best = clashes.index(0.0) if 0.0 in clashes else clashes.index(min(clashes))
        dx, dy = tries[best]
        boxes.append((x + dx, y + dy, x + dx + w, y + dy + h))
        leader = {"arrowstyle": "-", "lw": 0.4, "color": "gray"} if abs(dy) > h + 3 else None
        ax.annotate(text, data, xytext=(dx, dy), textcoords="offset points", fontsize=size, va="bottom",
                    ha="left", arrowprops=leader)


__all__ = ["MEMORY_PLOT", "P99_PLOT", "limits_line", "markdown", "summary", "to_json", "write_report"]
