"""tune's accuracy-vs-latency plot: a log latency axis (a 200 ms outlier must not squash the rest), the SLO as
a line, numbered points keyed to their configurations, the chosen plan ringed, shed points drawn not dropped."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from turborec.tune.objective import Constraints
from turborec.tune.pareto import OperatingPoint
from turborec.tune.report import plot_points


def test_accuracy_vs_p99_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [OperatingPoint(f"config {i}", 0.18 + 0.001 * i, p99, 2.0 + i, p99 / 2, {"stage": "batching"})
              for i, p99 in enumerate([0.7, 0.9, 1.2, 99.0, 198.0, math.inf])]
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig: figures.append(fig))  # keep the figures to inspect them
    paths = plot_points(points, Constraints(5.0, None, None), "config 2", 500.0, tmp_path)
    assert [p.name for p in paths] == ["tune_accuracy_vs_p99.png", "tune_accuracy_vs_memory.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    ax = figures[0].axes[0]
    assert ax.get_xscale() == "log"
    labels = ax.get_legend_handles_labels()[1]
    assert "SLO p99 5 ms" in labels and "chosen (4)" in labels  # numbered by accuracy, best first
    assert any("shed/lost" in label for label in labels)
    assert sorted(int(t.get_text()) for t in ax.texts) == [1, 2, 3, 4, 5, 6]
    key = "\n".join(t.get_text() for t in figures[0].texts)
    assert " 4  config 2   <- chosen" in key and " 1  config 5" in key


def test_plot_labels_stay_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Coincident points share one label, labels do not overlap, ticks are plain numbers, and a point
    confirmed over HTTP is joined to its in-process p99."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # five configurations of one model: same accuracy and memory, p99 within a few percent of each other
    points = [OperatingPoint(f"batching {i}", 0.2, 12.0 + 0.3 * i, 3.05, 5.0, {"stage": "batching"})
              for i in range(5)]
    points.append(OperatingPoint("chosen one", 0.2, 39.0, 3.05, 17.0,
                                 {"stage": "batching", "in_process_p99_ms": 11.0}))
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig: figures.append(fig))
    plot_points(points, Constraints(50.0, None, None), "chosen one", 100.0, tmp_path)
    p99_fig, memory_fig = figures
    for fig in figures:
        fig.canvas.draw()
    renderer = p99_fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in p99_fig.axes[0].texts]
    assert len(boxes) == 6
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    ticks = [t.get_text() for t in p99_fig.axes[0].get_xticklabels() if t.get_text()]
    assert len(ticks) >= 4 and all(t.replace(".", "").isdigit() for t in ticks), ticks  # "20", not "2x10^1"
    # memory: every point sits on one spot, so one label names them all
    assert [t.get_text() for t in memory_fig.axes[0].texts] == ["1-6"]
    dotted = [line for line in p99_fig.axes[0].lines if line.get_linestyle() == ":"]
    assert [list(line.get_xdata()) for line in dotted] == [[11.0, 39.0]]
