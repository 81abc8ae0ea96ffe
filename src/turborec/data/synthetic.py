"""A fast, learnable synthetic interaction generator.

The world: ``n_topics`` unit vectors in a ``dim``-dimensional latent space.
Every item belongs to one topic and has a Zipf-like popularity (weight
``rank ** -popularity_exponent``); its genres are drawn from genre directions
near its topic's vector, so genres carry the latent structure. Every user has a
latent vector near a primary topic; the user's ``topics_per_user`` most similar
topics, softmax-weighted, are the user's tastes.

An event: pick one of the user's topics (or, with ``topic_stickiness``, keep the
previous event's topic: a sequential signal), then an item of that topic by
popularity; with probability ``noise`` the item is instead drawn from global
popularity. (user, item) pairs are unique. Timestamps strictly increase per
user; ratings (optional) grow with user-topic affinity. User activity is
log-normal. A model that learns user tastes beats popularity; one that also
learns order beats that.

Generation runs over chunks of users with vectorized numpy, writing into
preallocated output arrays, so memory is the output plus one chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from itertools import pairwise
from typing import Any

import numpy as np

from turborec.data.interactions import Interactions, ItemFeatures
from turborec.data.vocab import Vocabulary
from turborec.errors import ConfigError

__all__ = ["SyntheticConfig", "generate_synthetic", "synthetic"]


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 10_000
    n_items: int = 2_000
    n_interactions: int = 200_000
    dim: int = 16
    n_topics: int = 24
    topics_per_user: int = 3
    topic_temperature: float = 0.25  # softmax temperature over a user's topics; lower = more focused users
    user_spread: float = 0.6  # how far a user's latent vector strays from its primary topic
    popularity_exponent: float = 1.0  # Zipf exponent of item popularity
    noise: float = 0.1  # share of events drawn from global popularity, ignoring taste
    topic_stickiness: float = 0.5  # chance an event keeps the previous event's topic
    min_user_interactions: int = 5
    activity_sigma: float = 1.0  # log-normal spread of user activity
    n_genres: int = 18
    max_genres_per_item: int = 3
    ratings: bool = False
    timestamps: bool = True
    start_time: int = 1_577_836_800  # 2020-01-01T00:00:00Z
    mean_gap_s: float = 3_600.0
    seed: int = 0
    chunk_size: int = 1_000_000  # events per generation chunk (bounds the working memory)

    def __post_init__(self) -> None:
        positive = ("n_users", "n_items", "dim", "n_topics", "topics_per_user", "n_genres", "max_genres_per_item")
        for name in (*positive, "chunk_size", "min_user_interactions"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"synthetic: {name} must be a positive integer, got {value!r}")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"synthetic: seed must be a non-negative integer, got {self.seed!r}")
        for name in ("noise", "topic_stickiness"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"synthetic: {name} must be in [0, 1), got {getattr(self, name)!r}")
        for name in ("topic_temperature", "mean_gap_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"synthetic: {name} must be > 0, got {getattr(self, name)!r}")
        if self.popularity_exponent < 0 or self.activity_sigma < 0 or self.user_spread < 0:
            raise ConfigError("synthetic: popularity_exponent, activity_sigma and user_spread must be >= 0")
        if self.n_interactions < self.n_users * self.min_user_interactions:
            raise ConfigError(
                f"synthetic: n_interactions={self.n_interactions} is fewer than n_users x min_user_interactions "
                f"= {self.n_users * self.min_user_interactions}; lower min_user_interactions or add interactions"
            )
        if self.n_interactions > self.n_users * self.max_per_user:
            raise ConfigError(
                f"synthetic: n_interactions={self.n_interactions} exceeds what {self.n_users} users can hold "
                f"with at most {self.max_per_user} distinct items each; add users or items"
            )

    @property
    def max_per_user(self) -> int:
        """Most events one user gets: half the catalog, so unique items stay easy to find."""
        return max(self.min_user_interactions, self.n_items // 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SyntheticConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise ConfigError(f"synthetic: unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(obj))


def synthetic(
    n_users: int = 10_000,
    n_items: int = 2_000,
    n_interactions: int = 200_000,
    dim: int = 16,
    seed: int = 0,
    **options: Any,
) -> Interactions:
    """Generate a synthetic dataset; ``options`` are further :class:`SyntheticConfig` fields."""
    base = {"n_users": n_users, "n_items": n_items, "n_interactions": n_interactions, "dim": dim, "seed": seed}
    return generate_synthetic(SyntheticConfig.from_dict({**base, **options}))


def generate_synthetic(config: SyntheticConfig) -> Interactions:
    """The same config (seed included) always gives the same data."""
    cfg = config
    struct_seed, count_seed, chunk_seed = np.random.SeedSequence(cfg.seed).spawn(3)
    world = _World(cfg, np.random.default_rng(struct_seed))
    counts = _events_per_user(cfg, np.random.default_rng(count_seed))
    total = int(counts.sum())
    user_out = np.empty(total, dtype=np.int32)
    item_out = np.empty(total, dtype=np.int32)
    time_out = np.empty(total, dtype=np.int64) if cfg.timestamps else None
    rating_out = np.empty(total, dtype=np.float32) if cfg.ratings else None
    chunk_of_user = (np.cumsum(counts) - 1) // cfg.chunk_size
    bounds = [0, *(np.flatnonzero(np.diff(chunk_of_user)) + 1).tolist(), cfg.n_users]
    filled = 0
    for (lo, hi), seed in zip(pairwise(bounds), chunk_seed.spawn(len(bounds) - 1)):
        rng = np.random.default_rng(seed)
        user, item, vectors = world.events(lo, counts[lo:hi], rng)
        n = len(user)
        user_out[filled : filled + n] = user + lo
        item_out[filled : filled + n] = item
        if time_out is not None:
            time_out[filled : filled + n] = _timestamps(cfg, user, hi - lo, rng)
        if rating_out is not None:
            rating_out[filled : filled + n] = world.ratings(vectors[user], item, rng)
        filled += n
    return Interactions(
        user=user_out[:filled],
        item=item_out[:filled],
        users=Vocabulary.range(cfg.n_users, name="user"),
        items=Vocabulary.range(cfg.n_items, name="item"),
        rating=None if rating_out is None else rating_out[:filled],
        timestamp=None if time_out is None else time_out[:filled],
        item_features=world.features,
        meta={
            "format": "synthetic",
            "config": cfg.to_dict(),
            # indexed by external id (== generated index), so it survives filtering and compaction
            "ground_truth": {"item_topic": world.item_topic, "user_topic": world.user_topic},
        },
    )


class _World:
    """The latent structure shared by every chunk: topics, items, user primary topics, genres."""

    def __init__(self, cfg: SyntheticConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        k = min(cfg.n_topics, cfg.n_items)
        self.topics = _unit(rng.standard_normal((k, cfg.dim)))
        share = rng.dirichlet(np.full(k, 2.0))
        # every topic gets at least one item, the rest follow the topic shares
        item_topic = np.concatenate([np.arange(k), rng.choice(k, size=cfg.n_items - k, p=share)])
        self.item_topic = rng.permutation(item_topic).astype(np.int16)
        self.user_topic = rng.choice(k, size=cfg.n_users, p=share).astype(np.int16)
        # popularity: a random rank per item; an item is drawn by (continuous) Zipf on its rank among
        # the candidates, in closed form: no per-item tables, no searches
        self.rank_order = rng.permutation(cfg.n_items).astype(np.int32)  # most popular first
        rank = np.empty(cfg.n_items, dtype=np.int64)
        rank[self.rank_order] = np.arange(cfg.n_items)
        self.quality = rng.normal(0.0, 0.4, cfg.n_items).astype(np.float32)
        self.by_topic = np.lexsort((rank, self.item_topic)).astype(np.int32)  # by topic, popular first
        self.topic_size = np.bincount(self.item_topic, minlength=k)
        self.topic_start = np.cumsum(self.topic_size) - self.topic_size
        self.features = self._genres(rng)

    def _genres(self, rng: np.random.Generator) -> ItemFeatures:
        cfg, k = self.cfg, len(self.topics)
        genre_dirs = _unit(rng.standard_normal((cfg.n_genres, cfg.dim)))
        logits = self.topics @ genre_dirs.T / 0.15
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        width = cfg.max_genres_per_item
        draws = np.empty((cfg.n_items, width), dtype=np.int64)
        for t in range(k):  # few topics; each draw is vectorized over the topic's items
            members = np.flatnonzero(self.item_topic == t)
            draws[members] = rng.choice(cfg.n_genres, size=(len(members), width), p=probs[t])
        n_tokens = rng.integers(1, width + 1, cfg.n_items)
        draws[np.arange(width)[None, :] >= n_tokens[:, None]] = cfg.n_genres  # past the item's count: drop
        draws.sort(axis=1)
        keep = draws < cfg.n_genres
        keep[:, 1:] &= draws[:, 1:] != draws[:, :-1]  # a genre once per item
        offsets = np.zeros(cfg.n_items + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(keep.sum(axis=1))
        vocab = Vocabulary(tuple(f"genre_{g:02d}" for g in range(cfg.n_genres)), name="feature")
        return ItemFeatures(offsets, draws[keep], vocab)

    def events(self, lo: int, counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Unique (user, item) events for users lo..lo+len(counts), grouped by user in generation order.

        Returns local user indices, items and the users' latent vectors.
        """
        cfg, n_users = self.cfg, len(counts)
        vectors = _unit(
            self.topics[self.user_topic[lo : lo + n_users]]
            + cfg.user_spread / np.sqrt(cfg.dim) * rng.standard_normal((n_users, cfg.dim))
        )
        m = min(cfg.topics_per_user, len(self.topics))
        logits = vectors @ self.topics.T / cfg.topic_temperature
        tastes = np.argpartition(-logits, m - 1, axis=1)[:, :m] if m < len(self.topics) else np.argsort(-logits, 1)
        weights = np.exp(np.take_along_axis(logits, tastes, 1) - logits.max(axis=1, keepdims=True))
        taste_cdf = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)

        # first round oversamples a little; duplicates are dropped and shortfalls redrawn for those users only
        user = np.repeat(np.arange(n_users, dtype=np.int32), counts + (counts >> 3) + 1)
        item = self._draw(user, tastes, taste_cdf, rng, sticky=True)
        user, item = _unique_pairs(user, item, counts, cfg.n_items)
        for attempt in range(8):
            short = counts - np.bincount(user, minlength=n_users)
            if not short.any():
                break
            redo = short[user] > 0
            more_user = np.repeat(np.arange(n_users, dtype=np.int32), 2 * short + 2 * (short > 0))
            if attempt < 6:
                more_item = self._draw(more_user, tastes, taste_cdf, rng, sticky=False)
            else:  # users with narrow tastes and many events: fill from the whole catalog
                more_item = rng.integers(0, cfg.n_items, len(more_user), dtype=np.int32)
            pool_user = np.concatenate([user[redo], more_user])
            order = np.argsort(pool_user, kind="stable")  # a user's earlier events stay first
            fixed_user, fixed_item = _unique_pairs(
                pool_user[order], np.concatenate([item[redo], more_item])[order], counts, cfg.n_items
            )
            user = np.concatenate([user[~redo], fixed_user])
            item = np.concatenate([item[~redo], fixed_item])
        order = np.argsort(user, kind="stable")
        return user[order], item[order], vectors

    def _draw(
        self, user: np.ndarray, tastes: np.ndarray, taste_cdf: np.ndarray, rng: np.random.Generator, sticky: bool
    ) -> np.ndarray:
        n = len(user)
        pick = (rng.random(n, dtype=np.float32)[:, None] > taste_cdf[user, :-1]).sum(axis=1)
        topic = tastes[user, pick]
        if sticky and self.cfg.topic_stickiness > 0:
            stay = rng.random(n, dtype=np.float32) < self.cfg.topic_stickiness
            stay[:1] = False
            stay[1:] &= user[1:] == user[:-1]  # a user's first event picks freshly
            source = np.where(stay, 0, np.arange(n))
            np.maximum.accumulate(source, out=source)
            topic = topic[source]
        within = _zipf_rank(self.topic_size[topic], rng.random(n), self.cfg.popularity_exponent)
        item = self.by_topic[self.topic_start[topic] + within]
        noisy = np.flatnonzero(rng.random(n, dtype=np.float32) < self.cfg.noise)
        ranks = _zipf_rank(np.int64(self.cfg.n_items), rng.random(len(noisy)), self.cfg.popularity_exponent)
        item[noisy] = self.rank_order[ranks]
        return item

    def ratings(self, user_vectors: np.ndarray, item: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        affinity = np.einsum("ij,ij->i", user_vectors, self.topics[self.item_topic[item]])
        score = 1.8 + 2.6 * affinity + self.quality[item] + rng.normal(0.0, 0.6, len(item))
        return np.clip(np.rint(score), 1, 5).astype(np.float32)


def _events_per_user(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """min_user_interactions each, the rest by log-normal activity, capped at max_per_user."""
    activity = rng.lognormal(0.0, cfg.activity_sigma, cfg.n_users)
    counts = np.full(cfg.n_users, cfg.min_user_interactions, dtype=np.int64)
    left = cfg.n_interactions - int(counts.sum())
    while left > 0:
        room = cfg.max_per_user - counts
        p = activity * (room > 0)
        counts += np.minimum(rng.multinomial(left, p / p.sum()), room)
        left = cfg.n_interactions - int(counts.sum())
    return counts


def _unique_pairs(
    user: np.ndarray, item: np.ndarray, counts: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated (user, item) pairs (first kept) and each user's events past its count.

    ``user`` must be grouped (sorted); the order inside each user is kept.
    """
    key = user.astype(np.int64) * n_items + item
    _, first = np.unique(key, return_index=True)
    first.sort()
    user, item = user[first], item[first]
    per_user = np.bincount(user, minlength=len(counts))
    starts = np.cumsum(per_user) - per_user
    keep = np.arange(len(user)) - starts[user] < counts[user]
    return user[keep], item[keep]


def _timestamps(cfg: SyntheticConfig, user: np.ndarray, n_users: int, rng: np.random.Generator) -> np.ndarray:
    """Strictly increasing seconds per user: a start within the first year, then exponential gaps >= 1 s."""
    start = cfg.start_time + rng.integers(0, 365 * 86_400, n_users)
    gaps = 1 + np.floor(rng.exponential(cfg.mean_gap_s, len(user))).astype(np.int64)
    elapsed = np.cumsum(gaps)
    first = np.searchsorted(user, np.arange(n_users), side="left")
    base = np.where(first > 0, elapsed[np.maximum(first - 1, 0)], 0)  # elapsed before the user's first event
    return start[user] + elapsed - base[user]


def _zipf_rank(n: np.ndarray | np.integer, u: np.ndarray, exponent: float) -> np.ndarray:
    """Ranks in [0, n) with P(rank r) ~ (r + 1) ** -exponent (continuous approximation, inverse CDF)."""
    size = np.asarray(n, dtype=np.float64) + 1.0
    b = 1.0 - exponent
    if abs(b) < 1e-9:
        x = size**u
    else:
        x = (1.0 + u * (size**b - 1.0)) ** (1.0 / b)
    return np.minimum(x.astype(np.int64) - 1, np.asarray(n, dtype=np.int64) - 1)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
