"""Compress a saved model into a smaller, faster one, or report what each compression costs and saves.

  turborec compress runs/tt --quantize int8 --prune 0.5 --out runs/tt-small
  turborec compress runs/tt --distill dim=64 --distill hidden=128 --quantize int4 \\
      --data ../shared/data/ml-latest-small --out runs/tt-student
  turborec compress runs/tt --report --data ../shared/data/ml-latest-small --out reports/tt

--quantize stores the embedding tables as fp16 / bf16 / int8 / int4; with int8 or int4 the MLP
layers become dynamic int8 too (--mlp float keeps them). --prune removes that fraction of every
hidden layer's neurons. --distill trains a smaller student of the same kind (sizes as KEY=VALUE)
from the model as teacher on the --data split, then applies the other options to the student.
--finetune N fine-tunes after pruning, quantization-aware for int8/int4 tables. Everything is
checked before any work. The result loads with turborec.load and works with every command (evaluate, recommend, serve, export).

--report builds the standard variants (fp16, int8, int4, int8 + int8 MLP, int4 + int8 MLP +
pruned MLP), adds any --compare artifacts, and writes compression.md / .json / .png to --out:
weight bytes, artifact bytes, resident memory of a fresh load, accuracy (NDCG@10 on the test part
of the --protocol split of --data for retrieval; AUC on --data's labelled rows for rankers) and
median CPU latency per batch, each against the model itself.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from turborec.cli.common import (
    add_data_arguments,
    add_deprecated_alias,
    add_threads_argument,
    apply_threads,
    key_value,
    positive_int,
)

QUANT_KINDS = ("fp16", "bf16", "int8", "int4")
CTR_FORMATS = ("criteo", "avazu")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="DIR", help="saved model artifact (retrieval or ranker)")
    p.add_argument("--out", required=True, metavar="DIR", help="artifact to write (report folder with --report)")
    p.add_argument("--quantize", choices=QUANT_KINDS, help="embedding table storage")
    p.add_argument("--mlp", choices=("float", "int8"), help="MLP weights (default int8 with --quantize int8/int4)")
    p.add_argument("--prune", type=float, metavar="RATIO", help="fraction of hidden neurons to remove, in (0, 1)")
    p.add_argument("--distill", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="train a smaller student, repeatable (e.g. dim=16, hidden=64); needs --data")
    p.add_argument("--alpha", type=float, default=0.3, help="weight of the distillation term (default 0.3)")
    p.add_argument("--finetune", type=int, default=0, metavar="EPOCHS",
                   help="fine-tune after pruning / with fake-quantized tables (needs --data)")
    p.add_argument("--report", action="store_true", help="measure standard variants instead of writing one")
    p.add_argument("--compare", action="append", default=[], metavar="DIR", help="extra artifact to report on")
    add_data_arguments(p)
    p.add_argument("--ctr-format", choices=CTR_FORMATS, default="criteo",
                   help="how a ranker's --data is read (labelled rows; default criteo)")
    p.add_argument("--protocol", default="recbole", help="split protocol of --data for retrieval (default recbole)")
    p.add_argument("--seed", type=int, default=2020, help="split seed (default 2020, as turborec train)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="users (rankers: rows x 16) per timed batch")
    add_deprecated_alias(p, "--batch", "--batch-size", "batch_size", type=positive_int)
    p.add_argument("--no-rss", action="store_true", help="skip the fresh-process resident-memory measurement")
    add_threads_argument(p, "distillation and fine-tuning (--report times one thread)")


def run(args: argparse.Namespace) -> int:
    from turborec.compress import artifact_kind
    from turborec.errors import ConfigError

    if artifact_kind(args.model) is None:
        from turborec.compress import load

        load(args.model)  # raises the loader's own error naming what is wrong
    if Path(args.out).resolve() == Path(args.model).resolve():
        raise ConfigError(f"--out {args.out} is the input model; write the result somewhere else")
    if args.report:
        return _report(args)
    apply_threads(args)
    return _compress(args)


# ------------------------------------------------------------------ compress
def _compression(args: argparse.Namespace) -> Any:
    from turborec.compress import Compression

    mlp = args.mlp or ("int8" if args.quantize in ("int8", "int4") else "float")
    return Compression(
        quantize=args.quantize, quantize_mlp=mlp == "int8", prune=args.prune, finetune_epochs=args.finetune
    )


def _typed_sizes(config: Any, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``--distill`` values typed like the teacher's config fields ('64,32' -> (64, 32)), ranges checked."""
    from turborec._util.options import parse_fields
    from turborec.train.options import check_range

    sizes = parse_fields(type(config), dict(pairs), what="--distill")
    for key, value in sizes.items():
        check_range(key, value)
    return sizes


def _compress(args: argparse.Namespace) -> int:
    from turborec.compress import artifact_kind, compress_estimator, compress_ranker, load, save_ranker
    from turborec.compress.distill import DistillConfig, student_estimator
    from turborec.errors import ConfigError

    spec = _compression(args)  # option checks first
    distill = dict(args.distill)
    if spec.empty and not distill:
        raise ConfigError("nothing to do: give --quantize, --mlp int8, --prune, --distill or --finetune (or --report)")
    if artifact_kind(args.model) == "ranker":
        if distill or spec.finetune_epochs:
            raise ConfigError("--distill / --finetune of a ranker need its training rows: use "
                              "turborec.compress.distill_ranker / compress_ranker from Python")  # fmt: skip
        loaded: Any = load(args.model)
        if not spec.empty:
            spec.check(loaded.model)
        small = compress_ranker(loaded.model, quantize=spec.quantize, quantize_mlp=spec.quantize_mlp, prune=spec.prune)
        path = save_ranker(args.out, small, encoder=loaded.encoder)
        print(f"saved {path}")
        return 0
    teacher: Any = load(args.model)
    config = DistillConfig(alpha=args.alpha)
    student = student_estimator(teacher, **_typed_sizes(teacher.config, list(distill.items()))) if distill else None
    if student is not None and not hasattr(type(student), "aux_loss"):
        raise ConfigError(f"--distill: {teacher.name} models take no distillation term (two-tower does)")
    if not spec.empty:
        spec.check(student.unfitted_net(teacher.dims()) if student is not None else teacher.net)
    if (distill or spec.finetune_epochs) and not args.data:
        raise ConfigError("--distill and --finetune train on data: give --data (and --format if not movielens)")
    # all checked: now the work
    split = _split(args) if args.data else None
    model = teacher
    if student is not None:
        from turborec.compress import distill_retrieval

        assert split is not None
        student.train_config = _quiet(student.train_config, args.quiet)
        model = distill_retrieval(teacher, student, split.train, split.valid, config)
    if not spec.empty:
        model = compress_estimator(
            model, quantize=spec.quantize, quantize_mlp=spec.quantize_mlp, prune=spec.prune,
            finetune_epochs=spec.finetune_epochs, train=split.train if split else None,
            valid=split.valid if split else None,
        )  # fmt: skip
    metrics: dict[str, Any] = {"compressed_from": str(args.model)}
    if split is not None:
        report = model.evaluate(split.test, exclude=[split.valid], ks=(10,))
        metrics["test"] = report.metrics
        ndcg = report.metrics["ndcg@10"]
        before = teacher.evaluate(split.test, exclude=[split.valid], ks=(10,)).metrics["ndcg@10"]
        kept = f", {100 * ndcg / before:.1f}% kept" if before > 0 else ""
        print(f"test ndcg@10 {ndcg:.4f} (the model: {before:.4f}{kept})")
    path = model.save(args.out, metrics=metrics)
    print(f"saved {path}  ({', '.join(r['transform'] for r in model.transforms) or 'distilled'})")
    print(_sizes(teacher, args.model, model, path))
    return 0


def _sizes(before: Any, before_path: str | Path, after: Any, after_path: str | Path) -> str:
    """One line: weights (tables + layers) and artifact bytes on disk, before and after."""
    from turborec.compress import net_memory
    from turborec.compress.report import disk_bytes

    def kb(n: int) -> str:
        return f"{n / 1024:,.1f} KB"

    w0, w1 = net_memory(before.net).model, net_memory(after.net).model
    d0, d1 = disk_bytes(before_path), disk_bytes(after_path)
    return (f"weights (tables + layers) {kb(w1)}, the model's {kb(w0)}: {w0 / w1:.1f}x smaller; "
            f"artifact on disk {kb(d1)}, the model's {kb(d0)}: {d0 / d1:.1f}x smaller")


def _quiet(train_config: Any, quiet: bool) -> Any:
    from dataclasses import replace

    return replace(train_config, progress=not quiet)


def _split(args: argparse.Namespace) -> Any:
    from turborec.cli.common import load_interactions
    from turborec.data import apply_protocol

    return apply_protocol(args.protocol, load_interactions(args), seed=args.seed)


# ------------------------------------------------------------------ report
def _report(args: argparse.Namespace) -> int:
    import torch

    from turborec.compress import artifact_kind, load
    from turborec.compress.report import write_report
    from turborec.errors import ConfigError

    if args.quantize or args.prune or args.distill or args.finetune or args.mlp:
        raise ConfigError("--report measures the standard variants; give the compression options without --report")
    torch.set_num_threads(1)  # latency of one serving thread, comparable across machines
    out = Path(args.out)
    kind = artifact_kind(args.model)
    for extra in args.compare:
        if artifact_kind(extra) != kind:
            raise ConfigError(f"--compare {extra}: not a {kind} artifact like {args.model}")
    base: Any = load(args.model)
    if kind == "ranker":
        reports = _ranker_reports(args, base, out)
    else:
        reports = _retrieval_reports(args, base, out)
    md, _, png = write_report(reports, out, f"compression of {args.model}", reference="model")
    print(md.read_text(encoding="utf-8"))
    print(f"wrote {md} and {png}")
    return 0


def _standard(model_net: Any) -> list[tuple[str, Any]]:
    """The standard variants that apply to this network (those whose checks pass)."""
    from turborec.compress import Compression
    from turborec.errors import ConfigError

    candidates = [
        ("fp16", Compression(quantize="fp16")),
        ("int8", Compression(quantize="int8")),
        ("int4", Compression(quantize="int4")),
        ("int8+mlp8", Compression(quantize="int8", quantize_mlp=True)),
        ("int4+mlp8+prune0.5", Compression(quantize="int4", quantize_mlp=True, prune=0.5)),
    ]
    usable = []
    for name, spec in candidates:
        try:
            spec.check(model_net)
        except ConfigError:
            continue
        usable.append((name, spec))
    if not usable:  # a model without embedding tables (Mult-DAE): its dense layers are what int8 can shrink
        with contextlib.suppress(ConfigError):
            spec = Compression(quantize_mlp=True)
            spec.check(model_net)
            usable.append(("mlp8", spec))
    return usable


def _retrieval_reports(args: argparse.Namespace, base: Any, out: Path) -> list[Any]:
    import numpy as np

    from turborec.compress import compress_estimator
    from turborec.compress.report import measure_variants

    split = _split(args) if args.data else None
    users = np.arange(min(args.batch_size, len(base.users)))

    def evaluate(est: Any) -> float:
        assert split is not None
        return float(est.evaluate(split.test, exclude=[split.valid], ks=(10,)).metrics["ndcg@10"])

    paths: list[tuple[str, str | Path, str]] = [("model", args.model, "")]
    for name, spec in _standard(base.net):
        variant = compress_estimator(base, quantize=spec.quantize, quantize_mlp=spec.quantize_mlp, prune=spec.prune)
        paths.append((name, variant.save(out / "variants" / name), "post-training"))
    paths += [(Path(extra).name, extra, "--compare") for extra in args.compare]
    return measure_variants(paths, metric_name="NDCG@10", evaluate=evaluate if split else None,
                            batch=lambda est: est.score_users(users), rss=not args.no_rss)  # fmt: skip


def _ranker_reports(args: argparse.Namespace, base: Any, out: Path) -> list[Any]:
    import numpy as np

    from turborec.compress import compress_ranker, save_ranker
    from turborec.compress.report import measure_variants
    from turborec.errors import ConfigError
    from turborec.train.ctr import evaluate_ranker, predict_ranker

    rows = _ctr_rows(args, base) if args.data else None
    if rows is None:
        raise ConfigError("--report of a ranker needs --data: labelled rows (--ctr-format criteo or avazu) to score")
    timed = rows.take(np.arange(min(len(rows), args.batch_size * 16)))
    paths: list[tuple[str, str | Path, str]] = [("model", args.model, "")]
    for name, spec in _standard(base.model):
        small = compress_ranker(base.model, quantize=spec.quantize, quantize_mlp=spec.quantize_mlp, prune=spec.prune)
        paths.append((name, save_ranker(out / "variants" / name, small, encoder=base.encoder), "post-training"))
    paths += [(Path(extra).name, extra, "--compare") for extra in args.compare]
    return measure_variants(paths, metric_name="AUC", evaluate=lambda m: evaluate_ranker(m.model, rows)["auc"],
                            batch=lambda m: predict_ranker(m.model, timed), rss=not args.no_rss)  # fmt: skip


def _ctr_rows(args: argparse.Namespace, loaded: Any) -> Any:
    from turborec.data.ctr import read_avazu, read_criteo
    from turborec.errors import ConfigError

    fmt = args.ctr_format
    if loaded.encoder is None:
        raise ConfigError(f"{args.model}: the ranker was saved without its encoder; raw rows cannot be scored")
    raw = read_criteo(args.data) if fmt == "criteo" else read_avazu(args.data)
    if raw.label is None:
        raise ConfigError(f"{args.data}: the rows have no labels to compute AUC with")
    return loaded.encoder.transform(raw)
