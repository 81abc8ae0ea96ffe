"""Trainable tables with fewer rows than ids: quotient-remainder and hashing-trick embeddings.

Both map an id to rows of smaller tables with integer arithmetic only (floor division,
remainder, multiply-add modulo a prime), so they train like a dense table and export to ONNX.
"""

from __future__ import annotations

import math
import random
from typing import ClassVar

import torch
from torch import nn

from turborec.errors import ConfigError
from turborec.models.embeddings import EmbeddingSpec

_PRIME = (1 << 31) - 1  # Mersenne prime: ids < 2**31 times factors < 2**31 stay inside int64


class QREmbedding(nn.Module):
    """Quotient-remainder compositional embedding (Shi et al., 2020).

    id -> quotient[id // m] (op) remainder[id % m] with tables of ceil(num / m) and m rows,
    ``m = collisions``; ``operation`` is 'mult' (elementwise product) or 'add'. No two ids
    share both their quotient and their remainder row, so each id gets its own pair of
    rows from about num / m + m rows instead of num.
    """

    OPERATIONS: ClassVar[tuple[str, ...]] = ("mult", "add")

    def __init__(
        self, num_embeddings: int, embedding_dim: int, collisions: int, operation: str = "mult", init_std: float = 0.05
    ) -> None:
        super().__init__()
        if not isinstance(collisions, int) or isinstance(collisions, bool) or not 1 <= collisions <= num_embeddings:
            raise ConfigError(f"qr table: 'collisions' must be an integer in [1, {num_embeddings}], got {collisions!r}")
        if operation not in self.OPERATIONS:
            raise ConfigError(f"qr table: 'operation' must be one of {list(self.OPERATIONS)}, got {operation!r}")
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.collisions = collisions
        self.operation = operation
        self.quotient = nn.Embedding(math.ceil(num_embeddings / collisions), embedding_dim)
        self.remainder = nn.Embedding(collisions, embedding_dim)
        if operation == "mult":
            # product of a N(0, std) row and a row near 1: starts like a dense table of that std
            nn.init.normal_(self.quotient.weight, std=init_std)
            nn.init.normal_(self.remainder.weight, mean=1.0, std=0.1)
        else:
            nn.init.normal_(self.quotient.weight, std=init_std / math.sqrt(2))
            nn.init.normal_(self.remainder.weight, std=init_std / math.sqrt(2))

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        q = self.quotient(torch.div(indices, self.collisions, rounding_mode="floor"))
        r = self.remainder(torch.remainder(indices, self.collisions))
        return q * r if self.operation == "mult" else q + r

    def to_spec(self) -> EmbeddingSpec:
        return EmbeddingSpec("qr", {"collisions": self.collisions, "operation": self.operation})

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, collisions={self.collisions}, operation={self.operation}"


class HashedEmbedding(nn.Module):
    """Hashing trick: id -> sum over ``num_hashes`` fixed hashes of rows of a ``buckets``-row table.

    hash_k(i) = ((a_k * i + b_k) mod (2**31 - 1)) mod buckets, with (a_k, b_k) drawn from
    ``seed``, so the mapping is a pure function of the spec and needs no stored remap.
    """

    def __init__(
        self, num_embeddings: int, embedding_dim: int, buckets: int, num_hashes: int = 1, seed: int = 0,
        init_std: float = 0.05,
    ) -> None:
        super().__init__()
        if not isinstance(buckets, int) or isinstance(buckets, bool) or buckets < 1:
            raise ConfigError(f"hash table: 'buckets' must be a positive integer, got {buckets!r}")
        if not isinstance(num_hashes, int) or isinstance(num_hashes, bool) or not 1 <= num_hashes <= 8:
            raise ConfigError(f"hash table: 'num_hashes' must be an integer in [1, 8], got {num_hashes!r}")
        if num_embeddings >= _PRIME:
            raise ConfigError(f"hash table: at most {_PRIME - 1} ids, got {num_embeddings}")
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.buckets = buckets
        self.num_hashes = num_hashes
        self.seed = int(seed)
        rng = random.Random(self.seed)
        self.factors = [(rng.randrange(1, _PRIME), rng.randrange(0, _PRIME)) for _ in range(num_hashes)]
        self.table = nn.Embedding(buckets, embedding_dim)
        nn.init.normal_(self.table.weight, std=init_std / math.sqrt(num_hashes))

    def bucket_of(self, indices: torch.Tensor) -> torch.Tensor:
        """Bucket of each id under every hash: [..., num_hashes]."""
        cols = [torch.remainder(torch.remainder(indices * a + b, _PRIME), self.buckets) for a, b in self.factors]
        return torch.stack(cols, dim=-1)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.table(self.bucket_of(indices)).sum(dim=-2)

    def to_spec(self) -> EmbeddingSpec:
        return EmbeddingSpec("hash", {"buckets": self.buckets, "num_hashes": self.num_hashes, "seed": self.seed})

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, buckets={self.buckets}, num_hashes={self.num_hashes}"


__all__ = ["HashedEmbedding", "QREmbedding"]
