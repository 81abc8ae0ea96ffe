"""The one :class:`Index` interface: numpy vectors and integer ids in, (ids, scores) out.

Behaviour every index shares (and the contract tests check):

- Scores are "higher is better": the inner product for ``metric="ip"`` (the default),
  the negated squared distance for ``metric="l2"``.
- ``search(queries, k)`` returns ``(ids int64 [nq, w], scores float32 [nq, w])`` sorted best
  first, with ``w = min(k, ntotal)``: a ``k`` larger than the catalog is clamped, not an error.
- ``exclude`` (seen items, blocklists) never appears in the result, and each query still gets
  ``w`` items whenever the catalog minus its exclusions holds that many; when it does not,
  the remaining slots are id -1 with score -inf. Excluded ids that are not in the catalog are ignored.
- ANN indexes over-fetch and refill (widening the search: ``nprobe = nlist``, larger ``efSearch``)
  for queries that lose results to exclusions, so exclusions cost recall nothing.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from turborec._util.artifact import Artifact, load_artifact, save_artifact
from turborec.errors import ArtifactError, ConfigError, DataError
from turborec.retrieval._exclude import ExcludeArg, Exclusions, drop_excluded, normalize_exclude
from turborec.retrieval.spec import IndexSpec, parse_spec

METRICS = ("ip", "l2")
ARTIFACT_KIND = "index"
ExtraWriter = Callable[[Path], None]


class Index(ABC):
    """Nearest-neighbour search over a catalog of ``dim``-dimensional vectors with integer ids."""

    def __init__(self, spec: IndexSpec, dim: int, metric: str = "ip") -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ConfigError(f"index '{spec}': dim must be a positive integer, got {dim!r}")
        if metric not in METRICS:
            raise ConfigError(f"index '{spec}': unknown metric '{metric}' (known: {', '.join(METRICS)})")
        self.dim = int(dim)
        self.metric = metric
        self._structure = replace(spec, params=())
        self._explicit_params: dict[str, int] = {}
        self._ids = np.empty(0, dtype=np.int64)
        self._identity_ids = True  # ids == arange(ntotal): lookups need no table
        self._sorted_ids: tuple[np.ndarray, np.ndarray] | None = None

    # ----------------------------------------------------------------- implementation hooks
    @abstractmethod
    def _add_vectors(self, vectors: np.ndarray) -> None:
        """Append float32 [n, dim] vectors; their positions continue from ``ntotal``."""

    @abstractmethod
    def _search_positions(
        self, queries: np.ndarray, fetch: int, shared: np.ndarray | None, widen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best ``fetch`` positions (-1 = none) and scores per query, best first, never returning a
        position in ``shared``. ``widen`` asks an ANN index to search as exhaustively as it can."""

    @abstractmethod
    def _apply_params(self, params: dict[str, int]) -> None:
        """Set runtime knobs (already validated against the family)."""

    @property
    @abstractmethod
    def params(self) -> dict[str, int]:
        """The runtime knobs in effect (defaults included)."""

    @abstractmethod
    def _payload(self) -> tuple[dict[str, np.ndarray], ExtraWriter | None]:
        """Tensors and an optional file writer that, with the ids, reproduce the index."""

    @classmethod
    @abstractmethod
    def _restore(
        cls, spec: IndexSpec, dim: int, metric: str, artifact: Artifact, tensors: dict[str, np.ndarray]
    ) -> Index:
        """Rebuild from a verified artifact (ids are set by the caller)."""

    # ----------------------------------------------------------------- public API
    @property
    def spec(self) -> IndexSpec:
        """Structure plus the runtime knobs set explicitly; ``str(index.spec)`` rebuilds this index."""
        return self._structure.with_params(**self._explicit_params)

    @property
    def ntotal(self) -> int:
        return int(self._ids.size)

    def __len__(self) -> int:
        return self.ntotal

    @property
    def ids(self) -> np.ndarray:
        """External id of each stored vector, in insertion order (read-only view)."""
        view = self._ids.view()
        view.flags.writeable = False
        return view

    @property
    def is_trained(self) -> bool:
        return True

    def train(self, vectors: np.ndarray) -> None:
        """Learn the coarse quantizer / codebooks (a no-op for indexes that need none)."""
        self._check_vectors(vectors, "training vectors")

    def set_params(self, **params: int) -> None:
        """Set runtime knobs, e.g. ``set_params(efSearch=128)`` or ``set_params(nprobe=32)``."""
        checked = self._structure.with_params(**params).params_dict
        self._apply_params(checked)
        self._explicit_params.update(checked)

    def add(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Append vectors [n, dim] with unique non-negative int ids (default: ntotal, ntotal+1, ...).

        An index that needs training and is not trained yet is trained on these vectors first.
        """
        x = self._check_vectors(vectors, "vectors")
        new_ids = self._check_new_ids(ids, x.shape[0])
        if x.shape[0] == 0:
            return
        if not self.is_trained:
            self.train(x)
        self._add_vectors(x)
        identity = self._identity_ids and bool(
            np.array_equal(new_ids, np.arange(self.ntotal, self.ntotal + x.shape[0]))
        )
        self._ids = np.concatenate([self._ids, new_ids])
        self._identity_ids = identity
        self._sorted_ids = None

    def search(self, queries: np.ndarray, k: int, exclude: ExcludeArg = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(ids, scores)`` per query; see the module docstring for the exact contract."""
        q = self._check_vectors(queries, "queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"index '{self.spec}': k must be a positive integer, got {k!r}")
        width = min(int(k), self.ntotal)
        nq = q.shape[0]
        if width == 0 or nq == 0:
            return np.full((nq, width), -1, dtype=np.int64), np.full((nq, width), -np.inf, dtype=np.float32)
        exclusions = normalize_exclude(exclude, nq, self._positions_of)
        positions, scores = self._search_excluding(q, width, exclusions)
        ids = np.where(positions >= 0, self._ids[np.maximum(positions, 0)], -1)
        return ids.astype(np.int64, copy=False), scores.astype(np.float32, copy=False)

    def search_positions(
        self, queries: np.ndarray, k: int, exclude_rows: np.ndarray | None = None, exclude_cols: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(positions, scores)`` with (query row, catalog position) pairs excluded: a model server's
        call, whose queries come from a model and whose exclusions are catalog positions already, so it skips
        the id mapping and input checks of :meth:`search` (same padding: -1 / -inf)."""
        nq = queries.shape[0]
        width = min(int(k), self.ntotal)
        per_query = None
        if exclude_rows is not None and exclude_cols is not None and len(exclude_rows):
            order = np.lexsort((exclude_cols, exclude_rows))
            rows, cols = exclude_rows[order], exclude_cols[order]
            bounds = np.searchsorted(rows, np.arange(nq + 1))
            per_query = [np.unique(cols[bounds[i]:bounds[i + 1]]) for i in range(nq)]
        return self._search_excluding(np.ascontiguousarray(queries, dtype=np.float32), width,
                                      Exclusions(None, per_query))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index as a checksummed artifact directory (no pickle)."""
        tensors, extra = self._payload()
        config = {"spec": str(self.spec), "dim": self.dim, "metric": self.metric}
        return save_artifact(
            path,
            kind=ARTIFACT_KIND,
            config=config,
            tensors={"ids": self._ids, **tensors},
            extra=extra,
            info={"ntotal": self.ntotal, "family": self._structure.family},
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Index:
        """Read an index written by :meth:`save` (verifying every checksum first)."""
        from turborec.retrieval.registry import index_class

        artifact = load_artifact(path, kinds=[ARTIFACT_KIND])
        config = artifact.config
        try:
            spec = parse_spec(str(config["spec"]))
            dim, metric = int(config["dim"]), str(config["metric"])
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise ArtifactError(f"{artifact.path}: malformed index config {config!r} ({exc})") from exc
        impl = index_class(spec.family)
        if not issubclass(impl, cls):
            raise ArtifactError(f"{artifact.path}: holds a '{spec.structure}' index, not a {cls.__name__}")
        tensors = artifact.numpy_tensors()
        if "ids" not in tensors:
            raise ArtifactError(f"{artifact.path}: index artifact has no 'ids' tensor")
        index = impl._restore(replace(spec, params=()), dim, metric, artifact, tensors)
        index._ids = tensors["ids"].astype(np.int64)
        index._identity_ids = bool(np.array_equal(index._ids, np.arange(index._ids.size)))
        if spec.params:
            index.set_params(**spec.params_dict)
        return index

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(spec='{self.spec}', dim={self.dim}, metric='{self.metric}', ntotal={self.ntotal})"
        )

    # ----------------------------------------------------------------- shared machinery
    def _search_excluding(self, queries: np.ndarray, k: int, exclusions: Exclusions) -> tuple[np.ndarray, np.ndarray]:
        """Over-fetch by each query's exclusion count, drop, and refill the queries left short."""
        n, nq = self.ntotal, queries.shape[0]
        own = exclusions.per_query
        longest = max((p.size for p in own), default=0) if own is not None else 0
        target = np.minimum(k, n - exclusions.excluded_counts(nq))
        fetch = min(n, k + longest)
        raw_pos, raw_scores = self._search_positions(queries, fetch, exclusions.shared, False)
        positions, scores = drop_excluded(raw_pos, raw_scores, own, k, n)
        short = np.flatnonzero((positions >= 0).sum(axis=1) < target)
        while short.size:
            fetch = min(n, 2 * fetch)
            sub = exclusions.subset(short)
            raw_pos, raw_scores = self._search_positions(queries[short], fetch, sub.shared, True)
            positions[short], scores[short] = drop_excluded(raw_pos, raw_scores, sub.per_query, k, n)
            if fetch == n:  # searched as widely as this index can: whatever is missing is unreachable
                break
            short = short[(positions[short] >= 0).sum(axis=1) < target[short]]
        return positions, scores

    def _positions_of(self, ids: np.ndarray) -> np.ndarray:
        """Sorted unique positions of the given external ids; ids not in the catalog are dropped."""
        n = self.ntotal
        if self._identity_ids:
            return np.unique(ids[(ids >= 0) & (ids < n)])
        if self._sorted_ids is None:
            order = np.argsort(self._ids, kind="stable")
            self._sorted_ids = (self._ids[order], order)
        sorted_ids, order = self._sorted_ids
        slot = np.searchsorted(sorted_ids, ids)
        slot_clipped = np.minimum(slot, max(n - 1, 0))
        found = (slot < n) & (sorted_ids[slot_clipped] == ids) if n else np.zeros(ids.shape, dtype=bool)
        return np.unique(order[slot_clipped[found]])

    def _check_vectors(self, vectors: Any, what: str) -> np.ndarray:
        arr = np.asarray(vectors)
        if arr.ndim != 2:
            raise DataError(f"{what} must be a 2-D array [n, {self.dim}], got shape {arr.shape}", source=what)
        if arr.shape[1] != self.dim:
            raise DataError(
                f"{what} have dimension {arr.shape[1]}, but index '{self.spec}' has dimension {self.dim}", source=what
            )
        if arr.dtype.kind not in "fiu":
            raise DataError(f"{what} must be numeric, got dtype {arr.dtype}", source=what)
        x = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"{what} contain NaN or infinite values", source=what)
        return x

    def _check_new_ids(self, ids: Any, n: int) -> np.ndarray:
        if ids is None:
            return np.arange(self.ntotal, self.ntotal + n, dtype=np.int64)
        arr = np.asarray(ids)
        if arr.shape != (n,):
            raise DataError(f"ids must have shape ({n},) to match the vectors, got {arr.shape}", source="ids")
        if n and arr.dtype.kind not in "iu":
            raise DataError(f"ids must be integers, got dtype {arr.dtype}", source="ids")
        new = arr.astype(np.int64)
        if n and new.min() < 0:
            raise DataError("ids must be non-negative (-1 marks an empty result slot)", source="ids")
        both = np.concatenate([self._ids, new])
        if np.unique(both).size != both.size:
            raise DataError("ids must be unique within the index (a duplicate id was given)", source="ids")
        return new


__all__ = ["ARTIFACT_KIND", "METRICS", "ExtraWriter", "Index"]
