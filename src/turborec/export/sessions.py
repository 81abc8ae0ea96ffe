"""Session-based next-click evaluation of edge re-ranking (replaying each user's later history).

Protocol (temporal, per user): each user's events in time order are cut by share into
train / valid / session parts (:func:`user_time_split`). The two-tower trains on train (valid for
early stopping); a *session* is the start of the user's session part. The server builds the candidate
list once, from the pre-session history; then, event by event, the next event is the target and each
method ranks the candidates knowing the clicks before it:

- the server's static list: the candidates in retrieval order, not seeing any in-session click;
- the same with the clicked items removed (what a device can do with no model at all);
- on-device re-ranking (any :class:`~turborec.edge.EdgeReranker`), which sees the clicks on candidates.

A click on an item outside the candidates is invisible to the device (it has no embedding for it),
and a target outside the candidates scores 0 for every method. NDCG@k has one relevant item.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from turborec.data.interactions import Interactions
from turborec.data.splits import Split, split_counts
from turborec.edge.runtime import EdgeReranker
from turborec.errors import ConfigError
from turborec.export.edge_session import SessionFactory
from turborec.train.history import Histories

# ranks candidate rows for one step: (session, clicked rows so far) -> candidate rows best first
StepRanker = Callable[["Session", np.ndarray], np.ndarray]


def user_time_split(x: Interactions, ratios: Sequence[float] = (0.7, 0.1, 0.2)) -> Split:
    """Per user, time-ordered: the first share of each user's events to train, then valid, then test.

    Event counts per user follow :func:`turborec.data.split_counts` (every user keeps a training event).
    """
    order = x.time_order()
    user = x.user[order]
    counts = np.bincount(user, minlength=x.n_users)
    per_part = split_counts(counts, ratios if len(ratios) == 3 else (ratios[0], 0.0, ratios[1]))
    starts = np.cumsum(counts) - counts
    pos = np.arange(len(user)) - starts[user]
    cut1 = per_part[:, 0][user]
    cut2 = cut1 + per_part[:, 1][user]
    labels = (pos >= cut1).astype(np.int8) + (pos >= cut2).astype(np.int8)
    part_of = np.empty(len(x), dtype=np.int8)
    part_of[order] = labels
    train, valid, test = (x.select(part_of == k) for k in range(3))
    return Split(train, valid, test, {"split": "user_time", "ratios": tuple(float(r) for r in ratios)})


@dataclass(frozen=True)
class Replay:
    """One user's session to replay: pre-session history and the session's events (item indices)."""

    user: int
    history: np.ndarray
    events: np.ndarray


def replays(pre_session: Histories, session_part: Interactions, max_events: int = 20) -> list[Replay]:
    """A replay per user with events in ``session_part`` (time-ordered, the first ``max_events``);
    the pre-session history is the user's in ``pre_session`` (e.g. ``Histories.from_interactions(train, valid)``)."""
    if max_events <= 0:
        raise ConfigError(f"max_events must be positive, got {max_events}")
    hist = pre_session
    events = Histories.from_interactions(session_part)
    out = []
    for u in range(events.n_users):
        ev = events.of(u)[:max_events]
        if len(ev):
            out.append(Replay(u, hist.of(u).copy(), ev.copy()))
    return out


@dataclass(frozen=True)
class Session:
    """A replay bound to its candidates: the server's state and each event as a candidate row (-1: not one)."""

    replay: Replay
    candidates: np.ndarray  # item indices, server order
    server_vec: np.ndarray
    event_rows: np.ndarray

    def steps(self) -> list[tuple[np.ndarray, int]]:
        """(rows clicked before the step, target row or -1) for every event."""
        out = []
        for t, target in enumerate(self.event_rows.tolist()):
            before = self.event_rows[:t]
            out.append((before[before >= 0], int(target)))
        return out


def bind_sessions(factory: SessionFactory, items: Sequence[Replay], batch: int = 256) -> list[Session]:
    """Server lists for every replay (batched) and each event's candidate row."""
    out: list[Session] = []
    for s in range(0, len(items), batch):
        chunk = items[s : s + batch]
        vecs, cands = factory.server_lists(np.array([r.user for r in chunk]), [r.history for r in chunk])
        for r, v, c in zip(chunk, vecs, cands):
            row_of = {int(item): row for row, item in enumerate(c.tolist())}
            rows = np.array([row_of.get(int(e), -1) for e in r.events], dtype=np.int64)
            out.append(Session(r, c, v, rows))
    return out


def static_ranker(session: Session, clicked: np.ndarray) -> np.ndarray:
    """The server's list as sent: retrieval order, blind to the session."""
    return np.arange(len(session.candidates))


def static_filtered_ranker(session: Session, clicked: np.ndarray) -> np.ndarray:
    """The server's list with already-clicked candidates removed."""
    order = np.arange(len(session.candidates))
    return order[~np.isin(order, clicked)] if len(clicked) else order


def device_ranker(factory: SessionFactory, reranker: EdgeReranker, k: int = 10) -> StepRanker:
    """On-device re-ranking with ``reranker`` (its models exported with ``factory``'s models)."""
    current: dict[str, Session] = {}

    def rank(session: Session, clicked: np.ndarray) -> np.ndarray:
        if current.get("s") is not session:
            reranker.use_bundle(
                factory.session(session.replay.user, session.replay.history, session.server_vec, session.candidates)
            )
            current["s"] = session
        return reranker.rank_rows(clicked, k)

    return rank


def evaluate_next_click(
    sessions: Sequence[Session], rankers: Mapping[str, StepRanker], k: int = 10
) -> list[dict[str, object]]:
    """NDCG@k, HR@k over every step, and NDCG@k over steps whose target is a candidate, per method."""
    rows = []
    in_cands = np.array([t >= 0 for s in sessions for _, t in s.steps()])
    for name, ranker in rankers.items():
        gains: list[float] = []
        for session in sessions:
            for clicked, target in session.steps():
                if target < 0:
                    gains.append(0.0)
                    continue
                top = ranker(session, clicked)[:k]
                hit = np.flatnonzero(top == target)
                gains.append(float(1.0 / np.log2(hit[0] + 2.0)) if len(hit) else 0.0)
        g = np.asarray(gains)
        rows.append({
            "method": name,
            f"ndcg@{k}": float(g.mean()) if len(g) else 0.0,
            f"hr@{k}": float((g > 0).mean()) if len(g) else 0.0,
            f"ndcg@{k} (target in candidates)": float(g[in_cands].mean()) if in_cands.any() else 0.0,
            "steps": len(g),
        })  # fmt: skip
    return rows


def candidate_coverage(sessions: Sequence[Session]) -> float:
    """Share of session events that are among the session's candidates."""
    rows = np.concatenate([s.event_rows for s in sessions]) if sessions else np.zeros(0)
    return float((rows >= 0).mean()) if len(rows) else 0.0


__all__ = [
    "Replay",
    "Session",
    "bind_sessions",
    "candidate_coverage",
    "device_ranker",
    "evaluate_next_click",
    "replays",
    "static_filtered_ranker",
    "static_ranker",
    "user_time_split",
]
