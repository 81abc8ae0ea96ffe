"""``turborec tune`` from the command line: bad input fails before any work, the budget is respected,
an infeasible run exits 3 with a readable summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from turborec.cli.main import main

SYNTH = {"n_users": 200, "n_items": 150, "n_interactions": 5000, "seed": 5}


@pytest.fixture
def synth_config(tmp_path: Path) -> Path:
    path = tmp_path / "synthetic.json"
    path.write_text(json.dumps(SYNTH))
    return path


def tune(args: list[str], synth: Path, out: Path) -> int:
    return main(["tune", "--data", str(synth), "--format", "synthetic", "--out", str(out), "--quiet", *args])


@pytest.mark.parametrize(("args", "message"), [
    (["--slo-p99-ms", "5", "--rate", "-5"], "--rate -5"),
    (["--slo-p99-ms", "5", "--rate", "500", "--min-accuracy", "1.2x"], "above 1.0x"),
    (["--slo-p99-ms", "-1", "--rate", "500"], "--slo-p99-ms"),
    (["--slo-p99-ms", "5", "--rate", "500", "--memory-mb", "0.0001"], "below the smallest model"),
    (["--slo-p99-ms", "5", "--rate", "500", "--backends", "torch-eager,tpu"], "unknown ['tpu']"),
    (["--slo-p99-ms", "5", "--rate", "500", "--objective", "latency"], "--min-accuracy"),
    (["--slo-p99-ms", "5", "--rate", "500", "--student-dims", "a,b"], "--student-dims"),
])
def test_contradictory_options_fail_before_any_work(args: list[str], message: str, synth_config: Path,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import turborec.tune.run as tune_run

    def no_work(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("tune trained or measured before rejecting its options")

    # behaviour, not speed: neither the reference fit nor the search may start
    monkeypatch.setattr(tune_run, "fit_reference", no_work)
    monkeypatch.setattr(tune_run, "run_tune", no_work)
    out = tmp_path / "out"
    assert tune(args, synth_config, out) == 2
    err = capsys.readouterr().err
    assert err.startswith("turborec tune: error:") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_a_budget_too_small_to_measure_exits_3_and_says_what_was_skipped(synth_config: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = tune(["--slo-p99-ms", "5", "--rate", "200", "--budget-minutes", "0.25", "--param", "epochs=1",
                 "--param", "dim=8", "--backends", "torch-eager", "--student-dims", ""], synth_config, out)
    assert code == 3
    text = capsys.readouterr().out
    assert "no configuration meets the constraints" in text and "0 points measured" in text
    report = (out / "report.md").read_text()
    assert "time budget" in report
    points = json.loads((out / "points.json").read_text())
    assert points["exit_code"] == 3 and points["chosen"] is None
    assert all(p["status"] == "skipped" for p in points["points"]) and len(points["points"]) >= 5
    assert not (out / "model").exists()
