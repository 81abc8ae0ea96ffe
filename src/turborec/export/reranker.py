"""Training of the tiny on-device re-ranker (:class:`~turborec.export.edge_modules.MLPReranker`).

Trained on replayed sessions from a period the two-tower did not train on (the valid part), with the
same int8 tables and the same user model the device runs, so its features are the device's features.
Loss: softmax cross-entropy of the next clicked candidate against the candidates not yet clicked.
Features are computed once per session (the two-tower is frozen); only the MLP trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from turborec.export.edge_modules import EdgeUserModel, MLPReranker
from turborec.export.edge_session import SessionFactory
from turborec.export.sessions import Session


@dataclass(frozen=True)
class RerankerConfig:
    hidden: int = 16
    epochs: int = 30
    lr: float = 5e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass(frozen=True)
class _Example:
    feats: torch.Tensor  # [T, C, F]
    blocked: torch.Tensor  # [T, C] bool: clicked before the step
    target: torch.Tensor  # [T] candidate row


def session_inputs(factory: SessionFactory, session: Session, recent_len: int) -> dict[str, np.ndarray]:
    """The device's per-step model inputs for every step with a candidate target (batched over steps)."""
    bundle = factory.session(session.replay.user, session.replay.history, session.server_vec, session.candidates)
    n_cand, n_hist = bundle.n_candidates, len(bundle.history_ids)
    length = factory.history_len
    steps = [(c, t) for c, t in session.steps() if t >= 0]
    history = np.full((len(steps), length), -1, dtype=np.int32)
    recent = np.full((len(steps), recent_len), -1, dtype=np.int32)
    blocked = np.zeros((len(steps), n_cand), dtype=bool)
    for r, (clicked, _) in enumerate(steps):
        seq = np.concatenate([np.arange(n_cand, n_cand + n_hist), clicked])[-length:]
        history[r, : len(seq)] = seq
        newest = clicked[::-1][:recent_len]
        recent[r, : len(newest)] = newest
        blocked[r, clicked] = True
    t = bundle.tensors
    return {
        "history": history, "recent": recent, "blocked": blocked,
        "target": np.array([tg for _, tg in steps], dtype=np.int64),
        "user_part": np.repeat(t["user_part"][None, :], len(steps), 0),
        "server_vec": np.repeat(t["server_vec"][None, :], len(steps), 0),
        **{k: t[k] for k in ("input_q", "input_scale", "input_bias", "item_q", "item_scale", "item_bias", "prior")},
    }  # fmt: skip


@torch.no_grad()
def _examples(factory: SessionFactory, sessions: Sequence[Session], recent_len: int) -> list[_Example]:
    user_model = EdgeUserModel(factory.net).eval()
    probe = MLPReranker()
    out = []
    for session in sessions:
        x = {k: torch.from_numpy(v) for k, v in session_inputs(factory, session, recent_len).items()}
        if len(x["target"]) == 0:
            continue
        user_part = x["user_part"] if user_model.use_user_id else None
        user_vec = user_model(x["history"], x["input_q"], x["input_scale"], x["input_bias"], user_part)
        items = x["item_q"].float() * x["item_scale"].unsqueeze(-1) + x["item_bias"].unsqueeze(-1)
        feats = probe.features(user_vec, x["server_vec"], x["recent"], items, x["prior"])
        out.append(_Example(feats, x["blocked"], x["target"]))
    return out


def fit_reranker(
    factory: SessionFactory, sessions: Sequence[Session], recent_len: int = 5, config: RerankerConfig | None = None
) -> MLPReranker:
    """Train an :class:`MLPReranker` on ``sessions`` (bound with ``factory``); returns it in eval mode."""
    cfg = config or RerankerConfig()
    torch.manual_seed(cfg.seed)
    examples = _examples(factory, sessions, recent_len)
    model = MLPReranker(cfg.hidden)
    if not examples:
        return model.eval()
    all_feats = torch.cat([e.feats.reshape(-1, e.feats.shape[-1]) for e in examples])
    model.set_normalization(all_feats.mean(0), all_feats.std(0))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = np.random.default_rng(cfg.seed)
    model.train()
    for _ in range(cfg.epochs):
        for i in gen.permutation(len(examples)).tolist():
            e = examples[i]
            logits = model.score_features(e.feats).masked_fill(e.blocked, float("-inf"))
            loss = F.cross_entropy(logits, e.target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


__all__ = ["RerankerConfig", "fit_reranker", "session_inputs"]
