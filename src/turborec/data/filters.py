"""Filters that drop events, then compact the vocabularies to what is left.

Every filter returns a new :class:`Interactions` whose user / item vocabularies
hold only the users and items that still have events (in their original
relative order), with ``item_features`` re-aligned through
:meth:`ItemFeatures.subset`. The applied steps are appended to
``meta["preprocessing"]`` so a dataset says how it was made.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from turborec.data.interactions import Interactions
from turborec.errors import ConfigError, DataError

__all__ = ["compact", "dedupe", "filter_min_rating", "kcore"]


def compact(x: Interactions, *, step: str | None = None) -> Interactions:
    """Re-index onto only the users and items that have events; features stay aligned."""
    used_users = np.flatnonzero(np.bincount(x.user, minlength=x.n_users))
    used_items = np.flatnonzero(np.bincount(x.item, minlength=x.n_items))
    meta = _with_step(x.meta, step)
    if len(used_users) == x.n_users and len(used_items) == x.n_items:
        return replace(x, meta=meta)
    user_map = np.full(x.n_users, -1, dtype=np.int32)
    user_map[used_users] = np.arange(len(used_users), dtype=np.int32)
    item_map = np.full(x.n_items, -1, dtype=np.int32)
    item_map[used_items] = np.arange(len(used_items), dtype=np.int32)
    return replace(
        x,
        user=user_map[x.user],
        item=item_map[x.item],
        users=x.users.take(used_users),
        items=x.items.take(used_items),
        item_features=x.item_features.subset(used_items) if x.item_features is not None else None,
        meta=meta,
    )


def filter_min_rating(x: Interactions, threshold: float) -> Interactions:
    """Keep events rated ``>= threshold`` (RecBole's ``val_interval: {rating: "[t,inf)"}``)."""
    if x.rating is None:
        raise DataError(f"filter_min_rating({threshold}) needs ratings, but these interactions have none")
    keep = np.asarray(x.rating) >= threshold
    return compact(x.select(keep), step=f"filter_min_rating(threshold={threshold})")


def kcore(x: Interactions, k: int, user_k: int | None = None, item_k: int | None = None) -> Interactions:
    """Iteratively drop users with fewer than ``user_k`` and items with fewer than ``item_k`` events.

    Both defaults are ``k``; 0 or 1 disables that side. Users and items below their
    threshold are removed together in each round (as RecBole does) until nothing
    changes; the result is the unique largest sub-dataset meeting both thresholds.
    Duplicated (user, item) events each count.
    """
    uk = k if user_k is None else user_k
    ik = k if item_k is None else item_k
    for name, value in (("k", k), ("user_k", uk), ("item_k", ik)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"kcore: {name} must be a non-negative integer, got {value!r}")
    user, item = x.user, x.item
    keep = np.ones(len(x), dtype=bool)
    active = np.arange(len(x))
    while True:
        u, i = user[active], item[active]
        bad_user = np.bincount(u, minlength=x.n_users) < uk
        bad_item = np.bincount(i, minlength=x.n_items) < ik
        drop = bad_user[u] | bad_item[i]
        if not drop.any():
            break
        keep[active[drop]] = False
        active = active[~drop]
    return compact(x.select(keep), step=f"kcore(user_k={uk}, item_k={ik})")


def dedupe(x: Interactions, keep: str = "last") -> Interactions:
    """One event per (user, item) pair: the ``'last'`` or ``'first'`` in time (array order without timestamps).

    The kept events stay in their original array order.
    """
    if keep not in ("first", "last"):
        raise ConfigError(f"dedupe: keep must be 'first' or 'last', got {keep!r}")
    n = len(x)
    time_order = np.argsort(x.timestamp, kind="stable") if x.timestamp is not None else np.arange(n)
    if keep == "last":
        time_order = time_order[::-1]
    key = x.user.astype(np.int64)[time_order] * max(x.n_items, 1) + x.item[time_order]
    _, first = np.unique(key, return_index=True)
    chosen = np.sort(time_order[first])
    return compact(x.select(chosen), step=f"dedupe(keep={keep!r})")


def _with_step(meta: dict[str, Any], step: str | None) -> dict[str, Any]:
    if step is None:
        return dict(meta)
    return {**meta, "preprocessing": [*meta.get("preprocessing", []), step]}
