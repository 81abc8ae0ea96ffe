"""Train a retrieval model and save it as an artifact directory.

By default the data is split by a named protocol (``recbole``: ratings >= 3, 10-core,
random 8:1:1 per user), the validation part drives early stopping, and test metrics
are stored in the artifact. ``--split none`` trains on the whole file.
"""

from __future__ import annotations

import argparse

from turborec.cli.common import add_data_arguments, add_threads_argument, apply_threads, key_value, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    p.add_argument("--task", choices=("retrieval", "pipeline", "ctr"), default="retrieval",
                   help="retrieval model, two-stage retrieve->rank pipeline, or CTR ranker (default retrieval)")
    p.add_argument("--model", default=None,
                   help="retrieval: popularity, bpr, two-tower, ease, mult-dae, dae-two-tower (2 Mult-DAEs + a "
                        "two-tower, scores summed; the last two are trained against an EASE teacher they fit on "
                        "the split; default two-tower); "
                        "ctr: logreg, fm, dlrm, dcnv2, deepfm (default dcnv2)")
    p.add_argument("--fields", metavar="FILE",
                   help="ctr, --format libfm: JSON field map name -> [first_id, last_id]; without it the i-th pair "
                        "of a line is field i, checked to hold one id range per position on every line")
    p.add_argument("--ranker", default="dlrm", help="pipeline ranker: logreg, fm, dlrm, dcnv2, deepfm (default dlrm)")
    p.add_argument("--candidates", type=positive_int, default=100, help="pipeline: retrieved candidates N (default 100)")
    p.add_argument("--keep-ranker", action="store_true",
                   help="pipeline: save the ranking stage even when it does not beat retrieval on held-out "
                        "validation users (by default the retriever alone is saved then, and served)")
    p.add_argument("--out", required=True, metavar="DIR", help="artifact directory to write (replaced atomically)")
    p.add_argument("--protocol", default="recbole", help="split protocol: recbole, leave-last-out, temporal")
    p.add_argument("--split", choices=("protocol", "none"), default="protocol", help="'none' trains on the whole file")
    p.add_argument("--param", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="model/training option, repeatable (e.g. dim=64, temperature=0.05, lr=0.002)")
    p.add_argument("--teacher", metavar="RUN|MODEL",
                   help="two-tower only: train against a teacher's scores as well as the held-out items: a saved "
                        "retrieval run fitted on the same split (same --data, --protocol, --seed), or a model name "
                        "(e.g. ease) trained first on this split; --param teacher_weight=, teacher_temperature= "
                        "say how (docs/benchmarks.md)")
    p.add_argument("--epochs", type=positive_int, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--seed", type=int, default=2020, help="split and training seed (default 2020)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("-k", "--k", type=positive_int, default=10, help="cutoff for reported metrics (default 10)")
    add_threads_argument(p)
    from turborec.cli import cmd_distributed

    cmd_distributed.add_train_arguments(p)


def run(args: argparse.Namespace) -> int:
    from turborec.cli import cmd_distributed

    if (code := cmd_distributed.run_sharded(args)) is not None:
        return code
    apply_threads(args)
    if args.task == "ctr":
        from turborec.cli.ctr import train_ctr

        return train_ctr(args)
    args.model = args.model or "two-tower"
    from turborec.cli.common import load_interactions
    from turborec.cli.report import print_table
    from turborec.data import apply_protocol
    from turborec.data.loaders import data_provenance
    from turborec.train.options import make_estimator

    typed = {"seed": args.seed, "device": args.device, "progress": not args.quiet}
    if args.epochs:
        typed["epochs"] = args.epochs
    model = make_estimator(args.model, dict(args.param), **typed)  # validates options before loading data
    if args.teacher and args.model != "two-tower":
        from turborec.errors import ConfigError

        raise ConfigError(f"--teacher trains a two-tower student, not {args.model}")
    data = load_interactions(args)
    metrics: dict[str, object] = {"data": data_provenance(data), "model": args.model}
    if args.task == "pipeline" and args.split == "none":
        from turborec.errors import ConfigError

        raise ConfigError("--task pipeline trains its ranker on the validation part: it needs a protocol split")
    if args.split == "none":
        if args.teacher:
            model.teacher = _teacher(args, data, None, metrics)  # type: ignore[attr-defined]
        model.fit(data)
        print(f"trained {args.model} on {len(data):,} interactions in {model.fit_seconds:.1f}s")
    else:
        split = apply_protocol(args.protocol, data, seed=args.seed)
        if not args.quiet:
            print(split.summary())
        if args.teacher:
            model.teacher = _teacher(args, split.train, split.valid, metrics)  # type: ignore[attr-defined]
        model.fit(split.train, split.valid)
        report = model.evaluate(split.test, exclude=[split.valid], ks=(args.k,))
        metrics.update({"protocol": args.protocol, "seed": args.seed, "test": report.metrics})
        print_table([{"model": args.model, **_pick(report.metrics, args.k), "fit_s": model.fit_seconds}])
        if args.task == "pipeline":
            return _pipeline(args, model, split, metrics)
    path = model.save(args.out, metrics=metrics)
    print(f"saved {path}")
    return 0


def _teacher(args: argparse.Namespace, train: object, valid: object, metrics: dict[str, object]) -> object:
    """``--teacher``: a saved retrieval run (its vocabularies checked at fit) or a model name fitted here."""
    from pathlib import Path

    from turborec.errors import ConfigError
    from turborec.train.options import make_estimator
    from turborec.train.recommender import known_estimators

    if Path(args.teacher).exists():
        from turborec.loading import RETRIEVAL, load

        teacher = load(args.teacher, accept=(RETRIEVAL,), command="train --teacher")
        metrics["teacher_source"] = str(args.teacher)
        return teacher
    if args.teacher not in known_estimators():
        raise ConfigError(f"--teacher {args.teacher}: no such run directory, and not a model "
                          f"({', '.join(known_estimators())})")
    teacher = make_estimator(args.teacher, seed=args.seed, device=args.device, progress=not args.quiet)
    teacher.fit(train, valid)
    metrics["teacher_source"] = args.teacher
    if not args.quiet:
        print(f"teacher {args.teacher} fitted in {teacher.fit_seconds:.1f}s")
    return teacher


def _pick(metrics: dict[str, float], k: int) -> dict[str, float]:
    return {name: metrics[f"{name}@{k}"] for name in ("recall", "ndcg", "hit", "mrr") if f"{name}@{k}" in metrics} | {
        f"coverage@{k}": metrics.get(f"coverage@{k}", 0.0)
    }


def _pipeline(args: argparse.Namespace, retriever: object, split: object, metrics: dict[str, object]) -> int:
    from turborec.cli.report import print_table
    from turborec.train.pipeline import TwoStagePipeline, save_trained

    pipe = TwoStagePipeline(retriever, n_candidates=args.candidates, ranker=args.ranker, seed=args.seed)  # type: ignore[arg-type]
    pipe.fit(split.train, split.valid)  # type: ignore[attr-defined]
    rows = []
    for n in sorted({20, 50, 100, args.candidates}):
        m = pipe.evaluate(split.test, exclude=[split.valid], ks=(args.k,), n_candidates=n)  # type: ignore[attr-defined]
        rows.append({"candidates": n, **_pick(m, args.k)})
    print_table(rows)
    pipe.metrics.update({**metrics, "pipeline_test": rows})
    path, staged = save_trained(pipe, args.out, keep_ranker=args.keep_ranker)
    if not staged:
        alone = pipe.metrics.get("blend_ndcg@10_w0", float("nan"))
        print(f"the {args.ranker} ranker does not beat retrieval on held-out validation users (blend weight 0, "
              f"NDCG@10 {alone:.4f} without it): saved the {args.model} retriever alone, served without a "
              "ranking stage (--keep-ranker saves the pipeline anyway)")
    print(f"saved {path}")
    return 0
