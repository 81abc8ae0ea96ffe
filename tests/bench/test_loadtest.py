"""``turborec loadtest``: patterns, HdrHistogram summaries, the generator's self-check, the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.bench.test_loadgen import http_server
from tests.bench.test_report import synthetic_result
from turborec.bench.loadgen import LoadSpec, RequestTemplate, arrival_times
from turborec.bench.loadtest import (
    calibrate,
    generator_limited,
    hdr_summary,
    pattern_phases,
    plot_latency,
    requests_for,
)
from turborec.cli.main import main
from turborec.errors import ConfigError


def test_patterns_shape_the_arrival_rate() -> None:
    assert pattern_phases("poisson", 100, 10) == ()
    burst = LoadSpec("http://127.0.0.1:1", 400, 10.0, phases=pattern_phases("burst", 400, 10.0))
    t = arrival_times(burst)
    middle, before = ((t >= 4) & (t < 6)).sum() / 2, (t < 4).sum() / 4
    assert middle == pytest.approx(3 * 400, rel=0.1) and before == pytest.approx(400, rel=0.1)
    ramp = pattern_phases("ramp", 1000, 10)
    assert len(ramp) == 10 and ramp[0] == (0.0, 100.0) and ramp[-1][1] == 1000.0
    t = arrival_times(LoadSpec("http://127.0.0.1:1", 1000, 10.0, phases=ramp))
    assert (t >= 9).sum() > 5 * (t < 1).sum()  # the last second carries ~10x the first
    with pytest.raises(ConfigError):
        pattern_phases("sine", 1, 1)


def test_hdr_percentiles_match_the_exact_ones() -> None:
    result = synthetic_result(5000)
    s = hdr_summary(result, 1000.0)
    ok = result.status == 200
    assert (s.sent, s.ok, s.shed, s.errors) == (5000, int(ok.sum()), 500, 1)
    for got, q in ((s.p50_ms, 50), (s.p99_ms, 99), (s.p999_ms, 99.9)):
        assert got == pytest.approx(np.percentile(result.latency[ok], q) * 1000, rel=0.01)
    assert s.max_ms == pytest.approx(np.nanmax(result.latency[ok]) * 1000, rel=0.01)


def test_the_generator_checks_itself_against_a_null_server() -> None:
    spec = LoadSpec("http://127.0.0.1:1", 300.0, 1.0, requests=requests_for("/v1/recommend", range(1, 5), 10, None))
    check = calibrate(spec, [None], seconds=1.0)
    # behaviour only: every request sent got its answer, and the lag was measured. Whether this machine keeps
    # up with 300 req/s right now is a speed figure (a loaded CI box may not): benchmarks/ report it
    assert check.sent > 0 and check.ok == check.sent and check.send_lag_p99_ms >= 0.0
    clean = check.__class__(**{**check.to_dict(), "send_lag_p99_ms": 0.2, "ok": check.sent})
    assert not generator_limited(clean)
    lagging = check.__class__(**{**check.to_dict(), "send_lag_p99_ms": 5.0})
    assert generator_limited(lagging)
    lossy = check.__class__(**{**check.to_dict(), "send_lag_p99_ms": 0.2, "ok": int(check.sent * 0.9)})
    assert generator_limited(lossy)


def test_cli_runs_a_load_writes_json_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with http_server(delay_s=0.002) as url:
        code = main(["loadtest", url, "--rate", "200", "--duration", "1.5", "--pattern", "burst",
                     "--users", "1:20", "--out", str(tmp_path / "run")])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "generator check" in printed and "p99.9" in printed
    report = json.loads((tmp_path / "run.json").read_text())
    s = report["summary"]
    assert s["ok"] == s["sent"] > 250 and s["errors"] == 0
    assert 2.0 <= s["p50_ms"] < 100.0  # the server's 2 ms is in every latency
    assert report["pattern"] == "burst" and (tmp_path / "run.png").stat().st_size > 10_000


def test_cli_rejects_bad_input_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loadtest", "http://192.0.2.1:80", "--duration", "1", "--no-calibrate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loopback" in err[0]
    assert main(["loadtest", "http://127.0.0.1:9", "--body", "{not json", "--no-calibrate"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["loadtest", "http://127.0.0.1:9", "--users", "9:1"])


def test_a_closed_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["loadtest", f"http://127.0.0.1:{port}", "--duration", "0.5", "--no-calibrate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot connect" in err[0] and str(port) in err[0]


def test_request_templates() -> None:
    reqs = requests_for("/v1/recommend", range(3, 6), 7, None)
    assert [json.loads(r.body) for r in reqs] == [{"user": str(u), "k": 7} for u in (3, 4, 5)]
    assert requests_for("/x", None, 1, '{"user": null}') == (RequestTemplate("POST", "/x", b'{"user": null}'),)


def test_latency_plot_shows_the_slo_the_shed_requests_and_what_was_sent(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", lambda fig: figures.append(fig))  # keep the figure to inspect it
    result = synthetic_result(n=2000)  # 2 s at 1000 req/s: every tenth shed, one lost
    path = plot_latency(result, tmp_path / "lt.png", "poisson, 1,000 req/s offered", slo_ms=5.0)
    assert path.stat().st_size > 10_000
    top, bottom = figures[0].axes
    labels = top.get_legend_handles_labels()[1]
    assert "SLO p99 5 ms" in labels and "shed (503), when sent: 200" in labels
    slo = [line for line in top.lines if list(line.get_ydata()) == [5.0, 5.0]]
    assert len(slo) == 1 and slo[0].get_linestyle() == "--"
    assert "10.0% shed" in top.get_title() and "2,000 sent" in top.get_title()
    figures[0].canvas.draw()
    ticks = [t.get_text() for t in top.get_yticklabels() if t.get_text()]
    assert ticks and all(t.replace(".", "").isdigit() for t in ticks), ticks  # "10", not "10^1"
    # below: answered, shed, failed per second, stacked; their sum is the rate sent (1000 req/s)
    assert bottom.get_legend_handles_labels()[1] == ["answered (200)", "shed (503)", "failed / timed out"]
    top_edge = bottom.collections[-1].get_paths()[0].vertices[:, 1].max()
    assert top_edge == pytest.approx(1000.0, rel=0.05)
