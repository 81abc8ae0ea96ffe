"""Score a file of CTR rows with a saved ranker: one click probability per row, in input order.

  turborec predict runs/dcn --data ../shared/data/criteo-sample-10k/wideresdnn_criteo_test_sample_unlabeled.txt.gz \\
      --format criteo --out scores.parquet

The file is streamed in blocks of --chunk-rows rows, so memory stays bounded whatever its size.
--format csv / parquet: a table whose header names the model's feature columns (those it was
trained on; other columns are ignored). libfm rows are read by position unless --fields FILE maps
feature ids to fields (see 'turborec train --help'). Output: a .parquet or .csv file with one
column, 'probability'. A progress bar is shown on a terminal; otherwise a plain line per block.
"""

from __future__ import annotations

import argparse

from turborec.cli.common import info, positive_int

FORMATS = ("criteo", "avazu", "libfm", "csv", "parquet")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="RUN", help="ranker artifact written by 'turborec train --task ctr'")
    p.add_argument("--data", required=True, metavar="FILE", help="rows to score (labels, if any, are ignored)")
    p.add_argument("--format", required=True, choices=FORMATS, help="how FILE is laid out")
    p.add_argument("--out", required=True, metavar="FILE", help="scores.parquet or scores.csv (replaced atomically)")
    p.add_argument("--fields", metavar="FILE", help="libfm: JSON field map, name -> [first_id, last_id]")
    p.add_argument("--chunk-rows", type=positive_int, default=65_536, help="rows read and scored at once (default 65536)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    import torch

    from turborec._util.heap import keep_freed_memory
    from turborec.data.ctr import LibfmFields
    from turborec.errors import ConfigError
    from turborec.loading import RANKER, load
    from turborec.train.ctr import LoadedRanker
    from turborec.train.ctr_predict import predict_file

    if args.fields and args.format != "libfm":
        raise ConfigError("--fields maps libfm feature ids to fields: it goes with --format libfm")
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # every block re-allocates the same buffers: no page faults for them (see _util/heap)
    ranker = load(args.model_dir, accept=(RANKER,), command="predict")  # compressed rankers too
    assert isinstance(ranker, LoadedRanker)
    fields = LibfmFields.from_file(args.fields) if args.fields else None
    started, cpu_started = time.perf_counter(), time.process_time()
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(unit=" rows", unit_scale=True, desc="scoring", file=sys.stderr)
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if bar is not None:
            bar.update(n)
        elif not args.quiet:
            rate = done / max(time.perf_counter() - started, 1e-9)
            print(f"scored {done:,} rows ({rate:,.0f} rows/s)", file=sys.stderr, flush=True)

    try:
        rows = predict_file(ranker, args.data, args.format, args.out, chunk_rows=args.chunk_rows, fields=fields,
                            on_chunk=progress)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    info(args, f"wrote {rows:,} probabilities to {args.out} in {seconds:.2f}s, {cpu:.2f} CPU s "
               f"({rows / max(seconds, 1e-9):,.0f} rows/s)")  # fmt: skip
    return 0
