"""Train / validation / test splits.

Every split returns parts that share the input's vocabularies and item
features, so a user or item index means the same thing in all three parts and
in the model trained on them. Each event lands in exactly one part; parts keep
the input's event order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from turborec.data.interactions import Interactions
from turborec.errors import ConfigError, DataError

__all__ = ["Split", "leave_last_out", "random_split", "split_counts", "temporal_split"]

PART_NAMES = ("train", "valid", "test")


@dataclass(frozen=True, eq=False)
class Split:
    """Three parts over the same vocabularies; ``info`` records how they were made."""

    train: Interactions
    valid: Interactions
    test: Interactions
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for part in (self.valid, self.test):
            if part.users is not self.train.users and part.users != self.train.users:
                raise DataError("split parts must share the user vocabulary")
            if part.items is not self.train.items and part.items != self.train.items:
                raise DataError("split parts must share the item vocabulary")

    def __iter__(self) -> Iterator[Interactions]:
        return iter((self.train, self.valid, self.test))

    def summary(self) -> str:
        """A small table: events, users and items per part, and how many are unseen in train."""
        seen_users = np.bincount(self.train.user, minlength=self.train.n_users) > 0
        seen_items = np.bincount(self.train.item, minlength=self.train.n_items) > 0
        head = ", ".join(f"{k}={v}" for k, v in self.info.items())
        lines = [
            f"Split over {self.train.n_users:,} users x {self.train.n_items:,} items" + (f" ({head})" if head else ""),
            f"{'part':<6} {'events':>12} {'share':>7} {'users':>10} {'items':>10} {'new users':>10} {'new items':>10}",
        ]
        total = max(sum(len(p) for p in self), 1)
        for name, part in zip(PART_NAMES, self):
            users = np.unique(part.user)
            items = np.unique(part.item)
            new_u = int((~seen_users[users]).sum())
            new_i = int((~seen_items[items]).sum())
            lines.append(
                f"{name:<6} {len(part):>12,} {len(part) / total:>7.1%} {len(users):>10,} {len(items):>10,}"
                f" {new_u:>10,} {new_i:>10,}"
            )
        return "\n".join(lines)


def split_counts(n: np.ndarray | int, ratios: Sequence[float] | np.ndarray) -> np.ndarray:
    """Events per part for groups of ``n`` events, as RecBole's ``_calcu_split_ids``.

    Every part after the first is rounded down and the first takes the rest; then,
    going from the last part backwards while the first part holds more than one
    event, a part whose exact share is in (0, 1) is given one event taken from the
    first. So a user with 3 events gets 1/1/1 under 8:1:1, one with 2 gets 1/0/1.
    Returns int64 [len(n), len(ratios)].
    """
    r = _normalized(ratios)
    total = np.atleast_1d(np.asarray(n, dtype=np.int64))
    exact = r[None, :] * total[:, None].astype(np.float64)
    counts = np.floor(exact).astype(np.int64)
    counts[:, 0] = total - counts[:, 1:].sum(axis=1)
    for part in range(len(r) - 1, 0, -1):
        bump = (counts[:, 0] > 1) & (exact[:, part] > 0) & (exact[:, part] < 1)
        counts[bump, part] += 1
        counts[bump, 0] -= 1
    return counts


def random_split(x: Interactions, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Per-user random split (RecBole ``RO`` order + ``RS`` ratios grouped by user).

    Each user's events are put in random order and cut by :func:`split_counts`, so
    every user keeps at least one training event. Two ratios give (train, test)
    with an empty validation part.
    """
    r = _three(ratios)
    rng = np.random.default_rng(seed)
    # users grouped, random order inside each: one sort of (user, random 32 bits) packed in an int64
    key = (x.user.astype(np.int64) << 32) | rng.integers(0, 2**32, len(x), dtype=np.int64)
    order = np.argsort(key)
    labels = _label_groups(x.user[order], x.n_users, r)
    return _parts(x, order, labels, {"split": "random", "ratios": tuple(float(v) for v in r), "seed": seed})


def leave_last_out(x: Interactions, n_valid: int = 1, n_test: int = 1) -> Split:
    """Per user in time order: the last ``n_test`` events to test, the ``n_valid`` before to valid.

    A user always keeps at least one training event; short histories fill test
    first (as RecBole's leave-one-out). Without timestamps the array order is the
    time order. Equal timestamps keep array order.
    """
    for name, value in (("n_valid", n_valid), ("n_test", n_test)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"leave_last_out: {name} must be a non-negative integer, got {value!r}")
    order = x.time_order()
    user = x.user[order]
    counts = np.bincount(user, minlength=x.n_users)
    starts = np.cumsum(counts) - counts
    from_end = counts[user] - 1 - (np.arange(len(user)) - starts[user])
    held = np.minimum(n_valid + n_test, np.maximum(counts - 1, 0))
    n_t = np.minimum(n_test, held)[user]
    n_v = (held - np.minimum(n_test, held))[user]
    labels = np.where(from_end < n_t, 2, np.where(from_end < n_t + n_v, 1, 0)).astype(np.int8)
    return _parts(x, order, labels, {"split": "leave_last_out", "n_valid": n_valid, "n_test": n_test})


def temporal_split(x: Interactions, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> Split:
    """Global split by timestamp: the oldest share to train, the newest to test.

    Cut positions follow :func:`split_counts` on the whole dataset; events with
    equal timestamps keep array order. Later parts may contain users and items
    unseen in train (that is the point of a temporal split).
    """
    if x.timestamp is None:
        raise DataError("temporal_split needs timestamps, but these interactions have none")
    r = _three(ratios)
    order = np.argsort(x.timestamp, kind="stable")
    counts = split_counts(len(x), r)[0]
    labels = np.repeat(np.arange(3, dtype=np.int8), counts)
    return _parts(x, order, labels, {"split": "temporal", "ratios": tuple(float(v) for v in r)})


# ----------------------------------------------------------------- helpers
def _normalized(ratios: Sequence[float] | np.ndarray) -> np.ndarray:
    r = np.asarray(ratios, dtype=np.float64)
    if r.ndim != 1 or len(r) < 2 or not np.isfinite(r).all() or (r < 0).any() or r[0] <= 0:
        raise ConfigError(f"split ratios must be >= 2 non-negative numbers with a positive first one, got {ratios!r}")
    return r / r.sum()


def _three(ratios: Sequence[float]) -> np.ndarray:
    r = _normalized(ratios)
    if len(r) == 2:
        return np.array([r[0], 0.0, r[1]])
    if len(r) != 3:
        raise ConfigError(f"split ratios need 2 (train, test) or 3 (train, valid, test) values, got {ratios!r}")
    return r


def _label_groups(sorted_user: np.ndarray, n_users: int, ratios: np.ndarray) -> np.ndarray:
    """Part label for events already grouped by user, cut per user by split_counts."""
    counts = np.bincount(sorted_user, minlength=n_users)
    per_part = split_counts(counts, ratios)
    cut1 = per_part[:, 0]
    cut2 = cut1 + per_part[:, 1]
    starts = np.cumsum(counts) - counts
    pos = np.arange(len(sorted_user)) - starts[sorted_user]
    return ((pos >= cut1[sorted_user]).astype(np.int8) + (pos >= cut2[sorted_user])).astype(np.int8)


def _parts(x: Interactions, order: np.ndarray, labels: np.ndarray, info: dict[str, Any]) -> Split:
    part_of = np.empty(len(x), dtype=np.int8)
    part_of[order] = labels
    train, valid, test = (x.select(part_of == k) for k in range(3))
    return Split(train, valid, test, info)
