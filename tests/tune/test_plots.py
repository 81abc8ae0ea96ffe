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
