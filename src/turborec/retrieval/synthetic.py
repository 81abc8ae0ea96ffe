"""Synthetic embedding catalogs shaped like trained ones, for index tests and benchmarks.

iid Gaussian vectors are the worst case for every ANN method and unlike any trained
embedding table. Learned item (and user) vectors are instead low-rank, clustered (genres,
categories) with skewed cluster sizes, and vary in norm with popularity. This generator
makes such vectors: a skewed mixture of Gaussians in a ``rank``-dimensional latent space,
projected to ``dim`` dimensions, plus a little full-rank noise and a log-normal norm factor.
Queries drawn from the same space (another seed) behave like user vectors of the same model.
``sample(..., normalize=True)`` gives unit vectors, as a two-tower model with normalized towers
(cosine scores) produces; the default keeps the popularity norms of an MF-style model, which
makes maximum-inner-product search markedly harder for every ANN method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from turborec.errors import ConfigError


@dataclass(frozen=True)
class ClusteredSpace:
    """A fixed vector distribution; :meth:`sample` draws catalogs or queries from it."""

    dim: int = 64
    n_clusters: int = 256
    rank: int = 24
    spread: float = 0.5  # within-cluster std in latent units (centers have std 1)
    noise: float = 0.1  # full-rank noise std relative to the projected signal
    norm_sigma: float = 0.25  # log-normal popularity factor on item norms
    seed: int = 0
    _centers: np.ndarray = field(init=False, repr=False, compare=False)
    _projection: np.ndarray = field(init=False, repr=False, compare=False)
    _weights: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dim < 1 or self.n_clusters < 1 or not 1 <= self.rank <= self.dim:
            raise ConfigError(f"ClusteredSpace: need dim >= 1, n_clusters >= 1, 1 <= rank <= dim; got {self}")
        rng = np.random.default_rng(self.seed)
        centers = rng.standard_normal((self.n_clusters, self.rank))
        projection = rng.standard_normal((self.rank, self.dim)) / np.sqrt(self.rank)
        weights = 1.0 / np.arange(1, self.n_clusters + 1) ** 0.8  # a few big categories, a long tail
        object.__setattr__(self, "_centers", centers)
        object.__setattr__(self, "_projection", projection)
        object.__setattr__(self, "_weights", weights / weights.sum())

    def sample(
        self, n: int, seed: int, *, vary_norms: bool = True, normalize: bool = False, chunk: int = 1 << 18
    ) -> np.ndarray:
        """``n`` float32 vectors [n, dim], generated ``chunk`` rows at a time (bounded scratch memory).
        ``normalize`` scales every vector to unit length (and so ignores ``vary_norms``)."""
        if n < 0:
            raise ConfigError(f"ClusteredSpace.sample: n must be >= 0, got {n}")
        rng = np.random.default_rng([self.seed, seed])
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            cluster = rng.choice(self.n_clusters, size=m, p=self._weights)
            latent = self._centers[cluster] + self.spread * rng.standard_normal((m, self.rank))
            x = latent @ self._projection + self.noise * rng.standard_normal((m, self.dim))
            if normalize:
                x /= np.linalg.norm(x, axis=1, keepdims=True)
            elif vary_norms:
                x *= rng.lognormal(0.0, self.norm_sigma, size=(m, 1))
            out[start : start + m] = x
        return out


__all__ = ["ClusteredSpace"]
