"""Export a saved model for another runtime.

``--edge`` writes an on-device re-ranking bundle (turborec.edge, the browser page in turborec/edge/web):
the two-tower's user model and a re-ranker as int8 ONNX graphs, plus one session's candidates with
their int8 embeddings and titles, under a size budget. The session is ``--user``'s (its training
history is the pre-session history) or an anonymous one with ``--history``.

The re-ranker is the two-tower's own dot product (``--reranker dot``) or a tiny MLP
(``--reranker mlp``) trained on sessions replayed from ``--data``: the events there that the model
did not train on, in time order, after each user's training history.

examples:
  turborec export runs/tt --edge --out runs/bundle --user 42
  turborec export runs/tt --edge --out runs/bundle --user 42 --reranker mlp --data ../shared/data/ml-latest-small
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from turborec.cli.common import add_data_arguments, positive_int

if TYPE_CHECKING:  # the CLI imports its heavy parts lazily
    from turborec.export import EdgeExportConfig, MLPReranker
    from turborec.train.recommender import Recommender


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="DIR", help="a two-tower model: trained, compressed, a 'tune --out' folder, "
                   "or a pipeline (its retriever)")
    p.add_argument("--edge", action="store_true", help="write an on-device re-ranking bundle (the only export so far)")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle directory to write (replaced atomically)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--user", help="external user id whose session the bundle is for")
    who.add_argument("--history", metavar="ID,ID,...", help="anonymous session: recent item ids, oldest first")
    p.add_argument("--candidates", type=positive_int, default=500, help="candidates per session (default 500)")
    p.add_argument("--recent", type=positive_int, default=5, help="recent clicks the re-ranker reads (default 5)")
    p.add_argument("--max-bytes", type=positive_int, default=5_000_000, help="bundle size budget (default 5000000)")
    p.add_argument("--fp32", action="store_true", help="keep the models' weights in fp32 (default int8)")
    p.add_argument("--reranker", choices=("dot", "mlp"), default="dot",
                   help="dot: the two-tower's score; mlp: a tiny re-ranker trained on sessions from --data")
    p.add_argument("--session-events", type=positive_int, default=20,
                   help="events replayed per user to train the mlp re-ranker (default 20)")
    p.add_argument("--reranker-epochs", type=positive_int, default=30, help="mlp re-ranker epochs (default 30)")
    add_data_arguments(p)


def run(args: argparse.Namespace) -> int:
    from turborec.errors import ConfigError

    if not args.edge:
        raise ConfigError("choose what to export: --edge (an on-device re-ranking bundle)")
    if args.reranker == "dot" and args.data:
        raise ConfigError("--data is only used to train --reranker mlp")
    from turborec.export import EdgeExportConfig, export_edge_bundle, two_tower_net
    from turborec.loading import RETRIEVAL_LIKE, load
    from turborec.train import TwoStagePipeline
    from turborec.train.recommender import Recommender

    model = load(args.model_dir, accept=RETRIEVAL_LIKE, command="export --edge")
    rec = model.retriever if isinstance(model, TwoStagePipeline) else model  # the device re-ranks on its own
    assert isinstance(rec, Recommender)
    two_tower_net(rec)  # one line for any other net, before any work
    config = EdgeExportConfig(
        n_candidates=args.candidates, recent_len=args.recent, quantize=not args.fp32, max_bytes=args.max_bytes
    )
    reranker = _train_reranker(args, rec, config) if args.reranker == "mlp" else None
    history = [h.strip() for h in args.history.split(",") if h.strip()] if args.history else None
    bundle = export_edge_bundle(rec, args.out, user_id=args.user, history_ids=history, reranker=reranker, config=config)
    assert bundle.path is not None
    sizes = {p.name: p.stat().st_size for p in sorted(bundle.path.iterdir()) if p.is_file()}
    who = f"user {bundle.user_id}" if bundle.user_id is not None else "an anonymous session"
    print(f"wrote {bundle.path}: model version {bundle.model_version} ({bundle.config['reranker']} re-ranker), "
          f"{bundle.n_candidates} candidates for {who}, {sum(sizes.values()):,} bytes")  # fmt: skip
    for name, size in sizes.items():
        print(f"  {name:<22} {size:>10,}")
    return 0


def _train_reranker(args: argparse.Namespace, rec: Recommender, config: EdgeExportConfig) -> MLPReranker:
    """Fit the MLP on replays of the events in --data that the model did not train on."""
    import numpy as np

    from turborec.cli.common import load_interactions
    from turborec.errors import ConfigError
    from turborec.export import (
        RerankerConfig,
        SessionFactory,
        bind_sessions,
        export_edge_models,
        fit_reranker,
        replays,
    )

    if not args.data:
        raise ConfigError("--reranker mlp trains on replayed sessions: give --data (the model's dataset)")
    assert rec.users is not None and rec.items is not None and rec.histories is not None
    data = load_interactions(args).with_vocabularies(rec.users, rec.items)
    trained = np.asarray(rec.histories.to_csr()[data.user, data.item]).ravel() > 0
    held_out = data.select(~trained)
    if len(held_out) == 0:
        raise ConfigError(f"{args.data}: every event was in the model's training data; nothing to replay")
    factory = SessionFactory(rec, export_edge_models(rec, None, config), config.n_candidates)
    sessions = bind_sessions(factory, replays(rec.histories, held_out, args.session_events))
    print(f"training the re-ranker on {len(sessions):,} replayed sessions ({len(held_out):,} held-out events)")
    return fit_reranker(factory, sessions, config.recent_len, RerankerConfig(epochs=args.reranker_epochs))
