"""Open-loop load test of a running turborec service (or any HTTP endpoint on loopback).

Requests are sent on a schedule (Poisson arrivals; --pattern burst or ramp varies the
rate), whether or not earlier ones were answered, and each latency counts from its
scheduled send time, so a slow server cannot slow the test down (no coordinated
omission). It first measures its own capacity against a null server at the peak rate
and says so when the generator, not the server, is the limit. Prints p50/p90/p99/p99.9/max
(HdrHistogram), errors, 503s and the achieved rate; --out writes JSON and a
latency-over-time PNG. Only loopback targets are accepted.
"""

from __future__ import annotations

import argparse

from turborec.cli.common import positive_int


def _users(text: str) -> range:
    try:
        lo, hi = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST:LAST user ids (e.g. 1:200), got {text!r}") from None
    if hi < lo:
        raise argparse.ArgumentTypeError(f"--users {text}: LAST must be >= FIRST")
    return range(lo, hi + 1)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", metavar="URL", help="base URL of the service, e.g. http://127.0.0.1:8000")
    p.add_argument("--rate", type=_positive_float, default=1000.0, help="offered requests per second (default 1000)")
    p.add_argument("--duration", type=_positive_float, default=30.0, help="seconds of load (default 30)")
    p.add_argument("--pattern", choices=("poisson", "burst", "ramp"), default="poisson",
                   help="poisson: constant rate; burst: 3x the rate for the middle fifth; ramp: rate/10 up to rate")
    p.add_argument("--path", default="/v1/recommend", help="request path (POST; default /v1/recommend)")
    p.add_argument("--users", type=_users, default=range(1, 201), metavar="FIRST:LAST",
                   help="user ids to cycle through in {'user': ID, 'k': K} bodies (default 1:200)")
    p.add_argument("-k", type=positive_int, default=10, help="k in the generated bodies (default 10)")
    p.add_argument("--body", default=None, help="one JSON body for every request instead of --users")
    p.add_argument("--processes", type=positive_int, default=1, help="generator processes (default 1)")
    p.add_argument("--cpus", default=None, help="comma-separated cores, one generator process each (pins them)")
    p.add_argument("--timeout", type=_positive_float, default=5.0, help="seconds before a request counts as an error")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-calibrate", action="store_true", help="skip the generator's own capacity check")
    p.add_argument("--out", default=None, metavar="PREFIX", help="write PREFIX.json and PREFIX.png")
    p.add_argument("--slo-p99-ms", type=_positive_float, default=None, metavar="MS",
                   help="the service's p99 budget: drawn as a line in the PNG, and the summary says if p99 met it")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from turborec.bench.loadgen import LoadSpec, run_load_processes
    from turborec.bench.loadtest import (
        calibrate,
        generator_limited,
        hdr_summary,
        pattern_phases,
        plot_latency,
        requests_for,
    )
    from turborec.errors import ConfigError

    cpu_sets: list[list[int] | None]
    if args.cpus:
        try:
            cpu_sets = [[int(c)] for c in args.cpus.split(",") if c.strip()]
        except ValueError:
            raise ConfigError(f"--cpus {args.cpus!r}: expected comma-separated core numbers") from None
    else:
        cpu_sets = [None] * args.processes
    spec = LoadSpec(url=args.url.rstrip("/"), rate=args.rate, duration_s=args.duration, timeout_s=args.timeout,
                    requests=requests_for(args.path, args.users, args.k, args.body), seed=args.seed,
                    phases=pattern_phases(args.pattern, args.rate, args.duration), max_requests=50_000_000)
    peak = max([spec.rate, *(r for _, r in spec.phases)])
    check = None
    if not args.no_calibrate:
        check = calibrate(spec, cpu_sets)
        limited = generator_limited(check)
        verdict = "the generator is the limit: add --processes / --cpus" if limited else "ok"
        print(f"generator check at {peak:,.0f} req/s against a null server: {check.ok:,} of {check.sent:,} answered, "
              f"send lag p99 {check.send_lag_p99_ms:.2f} ms, round trip p99 {check.p99_ms:.2f} ms: {verdict}")
    print(f"{args.pattern} load on {spec.url}{args.path}: {args.rate:,.0f} req/s for {args.duration:g} s ...", flush=True)
    result = run_load_processes(spec, cpu_sets)
    s = hdr_summary(result, args.rate)
    print(f"sent {s.sent:,}  ok {s.ok:,}  503 {s.shed:,}  errors {s.errors:,}  achieved {s.achieved_rate:,.0f} req/s")
    print(f"latency ms  p50 {s.p50_ms:.2f}  p90 {s.p90_ms:.2f}  p99 {s.p99_ms:.2f}  p99.9 {s.p999_ms:.2f}  "
          f"max {s.max_ms:.2f}  (generator lag p99 {s.send_lag_p99_ms:.2f})")
    if args.slo_p99_ms is not None:
        verdict = "met" if s.p99_ms <= args.slo_p99_ms else "MISSED"
        print(f"SLO p99 {args.slo_p99_ms:g} ms: {verdict} (p99 of answered requests {s.p99_ms:.2f} ms)")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        report = {"url": spec.url, "path": args.path, "pattern": args.pattern, "rate": args.rate,
                  "duration_s": args.duration, "summary": s.to_dict(),
                  "generator_check": check.to_dict() if check else None, "requests": result.to_json()}
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report))
        tmp.replace(out.with_suffix(".json"))
        plot_latency(result, out.with_suffix(".png"), f"{args.pattern}, {args.rate:,.0f} req/s offered",
                     slo_ms=args.slo_p99_ms)
        print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0 if s.ok else 1
