"""Search compression, backend, index and micro-batching for the best model that meets a p99 budget.

  turborec tune --data ../shared/data/ml-latest-small --slo-p99-ms 5 --rate 500 --out runs/tune
  turborec tune --data ../shared/data/ml-latest-small --model runs/tt --slo-p99-ms 2 --rate 500 \
      --min-accuracy 0.97x --out runs/tune-2ms

--data is a dataset (a two-tower reference model is trained on its --protocol split first); with
--model, that saved retrieval artifact is the reference instead (its recorded protocol and seed
are reused; artifacts record their data by file name, size and sha256, not by path, so the
dataset is given in --data). Every candidate gets NDCG@10 on the validation split and
its latency from a recorded request mix (real users and their histories) replayed open-loop at
--rate through the service; the best are confirmed over HTTP against a server on 127.0.0.1.

--min-accuracy 0.97x is relative to the reference model, 0.25 an absolute NDCG@10.
--objective latency minimises p99 at that floor instead of maximising accuracy within the SLO.
Writes --out/report.md, points.json, the Pareto plots (PNG), and the chosen configuration as an
artifact in --out/model (settings in its manifest's config.serving), and a reference model it
trained in --out/reference (start another run from it: --data DATASET --model OUT/reference). Exit status 3 when no
configuration meets the constraints (the closest ones are printed), 2 for invalid options.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from turborec.cli.common import add_data_arguments, add_threads_argument, apply_threads, key_value, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p, required=True)
    p.add_argument("--model", metavar="DIR", help="reference retrieval artifact (default: train one on --data)")
    p.add_argument("--slo-p99-ms", type=float, required=True, metavar="MS", help="p99 latency budget (ms)")
    p.add_argument("--rate", type=float, required=True, metavar="REQ_S", help="request rate to hold (req/s)")
    p.add_argument("--min-accuracy", metavar="FLOOR", help="NDCG@10 floor: 0.25 (absolute) or 0.97x (of the reference)")
    p.add_argument("--memory-mb", type=float, metavar="MB", help="cap on weights + index (MB)")
    p.add_argument("--objective", choices=("accuracy", "latency"), default="accuracy",
                   help="maximise accuracy within the SLO (default), or minimise p99 at --min-accuracy")
    p.add_argument("--budget-minutes", type=float, default=15.0, metavar="MIN", help="whole run (default 15)")
    p.add_argument("--out", required=True, metavar="DIR", help="report folder; the chosen artifact goes to DIR/model")
    p.add_argument("--protocol", default="recbole", help="split protocol (default recbole)")
    p.add_argument("--seed", type=int, default=2020, help="split and training seed (default 2020)")
    p.add_argument("--param", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="reference model option when training one (e.g. dim=64)")
    p.add_argument("--backends", default="torch-eager,onnx-fp32,onnx-int8,torch-compile",
                   help="user-tower backends to try, comma-separated")
    p.add_argument("--student-dims", default=None, metavar="D,D",
                   help="widths of distilled students (default: half and a quarter of the reference; '' for none)")
    p.add_argument("--measure-seconds", type=float, default=6.0,
                   help="replay per point, judged by the median of 3 windows (default 6)")
    p.add_argument("--confirm", type=int, default=5, metavar="N",
                   help="best feasible points tried over HTTP, best first, until one holds (default 5)")
    p.add_argument("--requests", type=positive_int, default=2000, help="size of the recorded request mix")
    add_threads_argument(p, "training the reference model (the search itself measures one thread per process)")


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per process: the service measures what it runs
    from turborec.errors import ConfigError
    from turborec.tune.objective import AccuracyFloor
    from turborec.tune.results import TuneOptions
    from turborec.tune.search import Budget

    budget = Budget(args.budget_minutes * 60.0)
    floor = AccuracyFloor.parse(args.min_accuracy) if args.min_accuracy is not None else None
    options = TuneOptions(
        slo_p99_ms=args.slo_p99_ms, rate=args.rate, min_accuracy=floor, memory_mb=args.memory_mb,
        objective=args.objective, budget_s=args.budget_minutes * 60.0, measure_s=args.measure_seconds,
        confirm_top=args.confirm, seed=args.seed, n_requests=args.requests,
    )  # every option checked here, before any work
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    from turborec.backends import runner_kinds

    unknown = sorted(set(backends) - set(runner_kinds()))
    if unknown:
        raise ConfigError(f"--backends: unknown {unknown} (known: {', '.join(runner_kinds())})")
    students = _dims(args.student_dims)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")

    import torch

    torch.set_num_threads(1)
    from turborec.data.loaders import data_provenance
    from turborec.tune.report import summary
    from turborec.tune.run import check_memory_cap, fit_reference, run_tune, space_for

    split, reference, teacher_dim = _reference_and_split(args, budget, options.memory_mb, students)
    if reference is None:
        check_memory_cap(options.memory_mb, split.train.n_users, split.train.n_items, _all_dims(teacher_dim, students))
        # turborec train's defaults (same estimator options, split and seed); capped at half the budget
        cap = 0.5 * options.budget_s
        print(f"training the reference two-tower with turborec train's defaults (at most {cap:.0f} s) ...",
              flush=True)
        apply_threads(args)
        reference = fit_reference(split, "two-tower", dict(args.param), max_seconds=cap,
                                  seed=args.seed, progress=not args.quiet)
        torch.set_num_threads(1)
        history = getattr(reference, "history", None)
        if history is not None:
            print(f"reference: validation NDCG@10 {history.best_score:.4f} after {len(history.losses)} epochs "
                  f"({history.seconds:.0f} s)", flush=True)
        if history is not None and history.seconds >= cap:
            print(f"warning: the reference stopped at the {cap:.0f} s cap before early stopping, so it is weaker "
                  "than `turborec train` makes; train one there and pass it with --model", flush=True)
        # kept so a later run (another SLO) can start from it: turborec tune --data DATA --model OUT/reference
        saved = reference.save(out / "reference", metrics={"data": data_provenance(split.train),
                                                            "protocol": args.protocol, "seed": args.seed})
        print(f"reference model saved to {saved}", flush=True)
    space = space_for(reference, backends=backends, student_dims=students)
    result = run_tune(reference, split, options, out, space=space, budget=budget, progress=not args.quiet,
                      log=print)
    print(summary(result))
    print(f"report: {out / 'report.md'}")
    return result.exit_code


def _all_dims(teacher_dim: int, students: list[int] | None) -> list[int]:
    """Every width the search may make (the default students are half and a quarter of the reference)."""
    extra = students if students is not None else [teacher_dim // 2, teacher_dim // 4]
    return [teacher_dim, *(d for d in extra if d > 0)]


def _dims(text: str | None) -> list[int] | None:
    from turborec.errors import ConfigError

    if text is None:
        return None
    try:
        dims = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--student-dims {text!r}: expected comma-separated integers such as 32,16") from None
    if any(d < 1 for d in dims):
        raise ConfigError(f"--student-dims {text!r}: widths must be positive")
    return dims


def _reference_and_split(args: argparse.Namespace, budget: Any, memory_mb: float | None,
                         students: list[int] | None) -> tuple[Any, Any, int]:
    """(split, reference model or None to train one, reference width)."""
    from turborec.cli.common import load_interactions
    from turborec.data import apply_protocol
    from turborec.errors import ConfigError
    from turborec.tune.run import check_memory_cap

    data_path, model_dir = args.data, args.model
    if model_dir is None and (Path(data_path) / "manifest.json").is_file():
        model_dir, data_path = data_path, None
    if model_dir is None:
        split = apply_protocol(args.protocol, load_interactions(args), seed=args.seed)
        from turborec.train.options import option_defaults

        dim = int(dict(args.param).get("dim", option_defaults("two-tower")["dim"]))
        return split, None, dim
    manifest = _manifest(Path(model_dir))
    config, metrics = manifest.get("config", {}), manifest.get("metrics", {})
    if data_path is None:
        data_path = metrics.get("data")
        if not isinstance(data_path, str) or data_path == "synthetic" or not Path(data_path).exists():
            raise ConfigError(f"{model_dir}: the artifact does not record a dataset this run can read "
                              f"({data_path!r}); give it as --data DATASET --model {model_dir}")
        args.protocol = metrics.get("protocol", args.protocol)
        args.seed = int(metrics.get("seed", args.seed))
    dims = config.get("dims", {})
    dim = int(config.get("net", {}).get("dim", 64))
    check_memory_cap(memory_mb, int(dims.get("n_users", 0)), int(dims.get("n_items", 0)), _all_dims(dim, students))
    from turborec.loading import RETRIEVAL, load
    from turborec.train.recommender import Recommender

    reference = load(model_dir, accept=(RETRIEVAL,), command="tune")
    assert isinstance(reference, Recommender)
    split = apply_protocol(args.protocol, load_interactions(args, path=data_path), seed=args.seed)
    if split.train.users != reference.users or split.train.items != reference.items:
        raise ConfigError(f"{model_dir}: the model was not trained on the {args.protocol} split of {data_path} "
                          f"with seed {args.seed} (vocabularies differ); validation needs that split: pass the "
                          "--data, --protocol and --seed it was trained with")
    return split, reference, dim


def _manifest(path: Path) -> dict[str, Any]:
    from turborec.errors import ArtifactError

    try:
        obj = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a readable artifact ({exc})") from exc
    if not isinstance(obj, dict):
        raise ArtifactError(f"{path}: not a turborec manifest")
    return obj
