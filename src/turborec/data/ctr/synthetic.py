"""Synthetic click logs from a known click model, so the best achievable AUC is known.

The generating model is a factorization machine with dense terms::

    logit = bias + sum_j w_j[x_j] + sum_{i<j} <v_i[x_i], v_j[x_j]> + beta . dense

with categorical values drawn from a Zipf-like popularity per feature and dense
features standard normal. ``bias`` is set so the mean click rate is close to
``target_rate``. Labels are Bernoulli(sigmoid(logit)); the true probabilities come
back with the data, so the AUC of the generating model on any split is the
ceiling a ranker can approach.

Rows are produced in chunks of ``chunk_rows`` from per-chunk seeded generators,
so memory beyond the output arrays stays bounded (10M+ rows work) and
:func:`iter_synthetic_ctr` can stream data that does not fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from turborec.data.ctr.containers import CTRData, RawCTR
from turborec.errors import ConfigError


@dataclass(frozen=True)
class SyntheticCTRConfig:
    n_rows: int = 100_000
    vocab_sizes: tuple[int, ...] = (20, 50, 100, 200, 500, 1000, 2000, 10)
    n_dense: int = 4
    latent_dim: int = 4
    main_effect_std: float = 0.3
    interaction_std: float = 0.2  # std of each pairwise term
    dense_effect_std: float = 0.3
    zipf_exponent: float = 1.05
    target_rate: float = 0.2
    seed: int = 0
    chunk_rows: int = 250_000

    def __post_init__(self) -> None:
        if self.n_rows < 1 or self.chunk_rows < 1:
            raise ConfigError(f"n_rows and chunk_rows must be >= 1, got {self.n_rows}, {self.chunk_rows}")
        if not self.vocab_sizes or min(self.vocab_sizes) < 1:
            raise ConfigError(f"vocab_sizes must be non-empty and >= 1, got {self.vocab_sizes}")
        if not 0.0 < self.target_rate < 1.0:
            raise ConfigError(f"target_rate must be in (0, 1), got {self.target_rate}")
        if self.n_dense < 0 or self.latent_dim < 1:
            raise ConfigError(f"n_dense must be >= 0 and latent_dim >= 1, got {self.n_dense}, {self.latent_dim}")


@dataclass(frozen=True, eq=False)
class SyntheticCTR:
    """Generated rows plus the generating model's click probability for each row."""

    data: CTRData
    true_prob: np.ndarray  # float32 [N]

    def raw(self, source: str = "synthetic") -> RawCTR:
        """The rows as a file would hold them (categorical values as text, columns d0.. and c0..), for the
        CTR recipe, which fits its own encoder."""
        d = self.data
        return RawCTR(d.dense.astype(np.float64), d.sparse.astype(str).astype(object), d.label,
                      tuple(f"d{i}" for i in range(d.n_dense)), tuple(f"c{j}" for j in range(d.n_sparse)), source)  # fmt: skip


class SyntheticClickModel:
    """The ground-truth model behind a :class:`SyntheticCTRConfig` (deterministic in its seed)."""

    def __init__(self, config: SyntheticCTRConfig) -> None:
        self.config = config
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0]))
        k = config.latent_dim
        self.main = [rng.normal(0.0, config.main_effect_std, v + 1).astype(np.float32) for v in config.vocab_sizes]
        # scale so each pairwise term has std ~ interaction_std regardless of latent_dim
        v_std = np.sqrt(config.interaction_std / np.sqrt(k))
        self.latent = [rng.normal(0.0, v_std, (v + 1, k)).astype(np.float32) for v in config.vocab_sizes]
        self.beta = rng.normal(0.0, config.dense_effect_std, config.n_dense).astype(np.float32)
        self.popularity = []
        for v in config.vocab_sizes:
            weights = 1.0 / np.arange(1, v + 1, dtype=np.float64) ** config.zipf_exponent
            self.popularity.append(np.cumsum(weights[rng.permutation(v)] / weights.sum()))
        self.bias = 0.0
        pilot_dense, pilot_sparse = self.sample_features(np.random.default_rng([config.seed, 1]), 50_000)
        self.bias = _bias_for_rate(self.logit(pilot_dense, pilot_sparse), config.target_rate)

    def sample_features(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        dense = rng.standard_normal((n, self.config.n_dense), dtype=np.float32)
        sparse = np.empty((n, len(self.config.vocab_sizes)), dtype=np.int64)
        for j, cdf in enumerate(self.popularity):
            sparse[:, j] = np.minimum(np.searchsorted(cdf, rng.random(n)), len(cdf) - 1) + 1  # row 0 = OOV, unused
        return dense, sparse

    def logit(self, dense: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        out = np.full(len(sparse), self.bias, dtype=np.float32)
        total = np.zeros((len(sparse), self.config.latent_dim), dtype=np.float32)
        squares = np.zeros(len(sparse), dtype=np.float32)
        for j in range(len(self.main)):
            out += self.main[j][sparse[:, j]]
            v = self.latent[j][sparse[:, j]]
            total += v
            squares += (v * v).sum(axis=1)
        out += 0.5 * ((total * total).sum(axis=1) - squares)
        if self.config.n_dense:
            out += dense @ self.beta
        return out

    def prob(self, dense: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-self.logit(dense, sparse)))).astype(np.float32)


def _bias_for_rate(logits: np.ndarray, rate: float) -> float:
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if (1.0 / (1.0 + np.exp(-(logits + mid)))).mean() > rate:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def iter_synthetic_ctr(config: SyntheticCTRConfig) -> Iterator[SyntheticCTR]:
    """Yield the rows of :func:`synthetic_ctr` chunk by chunk (same rows, same order)."""
    model = SyntheticClickModel(config)
    cards = tuple(v + 1 for v in config.vocab_sizes)
    for chunk, start in enumerate(range(0, config.n_rows, config.chunk_rows)):
        n = min(config.chunk_rows, config.n_rows - start)
        rng = np.random.default_rng([config.seed, 2, chunk])
        dense, sparse = model.sample_features(rng, n)
        prob = model.prob(dense, sparse)
        label = (rng.random(n, dtype=np.float32) < prob).astype(np.float32)
        yield SyntheticCTR(CTRData(dense, sparse, label, cards), prob)


def synthetic_ctr(config: SyntheticCTRConfig) -> SyntheticCTR:
    """All ``config.n_rows`` rows in memory (output arrays preallocated, generated chunk-wise)."""
    k, f = config.n_dense, len(config.vocab_sizes)
    dense = np.empty((config.n_rows, k), dtype=np.float32)
    sparse = np.empty((config.n_rows, f), dtype=np.int64)
    label = np.empty(config.n_rows, dtype=np.float32)
    prob = np.empty(config.n_rows, dtype=np.float32)
    start = 0
    for part in iter_synthetic_ctr(config):
        stop = start + len(part.data)
        dense[start:stop], sparse[start:stop] = part.data.dense, part.data.sparse
        label[start:stop], prob[start:stop] = part.data.label, part.true_prob
        start = stop
    cards = tuple(v + 1 for v in config.vocab_sizes)
    return SyntheticCTR(CTRData(dense, sparse, label, cards), prob)
