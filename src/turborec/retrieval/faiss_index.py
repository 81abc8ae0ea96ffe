"""FAISS indexes (Flat, HNSW, HNSW+SQ8, IVF-Flat, IVF-SQ8, IVF-PQ) behind the :class:`Index` interface.

FAISS stores vectors at positions 0..ntotal-1; external ids live in the base class, so
exclusions become FAISS ``IDSelector`` s over positions (shared blocklists) or over-fetch and
refill (per-query seen items). The index is saved with ``faiss.serialize_index`` to a plain
file inside the checksummed artifact, never pickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from turborec._util.artifact import Artifact
from turborec._util.optional import require
from turborec.errors import ArtifactError, ConfigError
from turborec.retrieval.base import ExtraWriter, Index
from turborec.retrieval.registry import register_index
from turborec.retrieval.spec import IndexSpec

INDEX_FILE = "index/faiss.index"
# coarse k-means and PQ codebooks learn from at most this many points per list (FAISS warns
# under 39); more only slows training down
TRAIN_POINTS_PER_LIST = 64
MIN_TRAIN_SAMPLE = 1 << 16


def _faiss() -> Any:
    return require("faiss", "faiss", "faiss-cpu")


@register_index("flat", "hnsw", "ivf")
class FaissIndex(Index):
    """A FAISS index built with ``faiss.index_factory`` from the spec's structure.

    Knobs: ``efSearch`` (HNSW, FAISS default 16; FAISS searches with ``max(efSearch, k)``),
    ``nprobe`` (IVF, FAISS default 1), ``k_factor`` (IVF with ``,RFlat``: candidates re-ranked
    exactly = ``k_factor * k``, FAISS default 1). Untrained indexes (IVF, SQ8) train on the first ``add``,
    on a sample of at most ``max(64 * nlist, 65536)`` vectors.
    """

    def __init__(self, spec: IndexSpec, dim: int, metric: str = "ip", *, native: Any = None) -> None:
        super().__init__(spec, dim, metric)
        faiss = _faiss()
        pq = spec.pq
        if pq is not None and dim % pq[0] != 0:
            raise ConfigError(f"index '{spec}': PQ{pq[0]} needs a dimension divisible by {pq[0]}, got {dim}")
        self._metric_type = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
        if native is None:
            native = faiss.index_factory(self.dim, spec.faiss_factory_string(), self._metric_type)
        self._native = native
        self._ivf = faiss.downcast_index(faiss.extract_index_ivf(native)) if spec.family == "ivf" else None
        if self._ivf is not None and hasattr(self._ivf, "do_polysemous_training"):
            # the factory turns on polysemous codes, which search never uses here and which make
            # PQ training 10-20x slower
            self._ivf.do_polysemous_training = False
        self._hnsw = faiss.downcast_index(native).hnsw if spec.family == "hnsw" else None
        self._refine = faiss.downcast_index(native) if spec.refine else None

    @property
    def native(self) -> Any:
        """The underlying ``faiss.Index`` (for inspection; mutate through this class)."""
        return self._native

    @property
    def params(self) -> dict[str, int]:
        if self._hnsw is not None:
            return {"efSearch": int(self._hnsw.efSearch)}
        if self._ivf is not None and self._refine is not None:
            return {"k_factor": int(self._refine.k_factor), "nprobe": int(self._ivf.nprobe)}
        if self._ivf is not None:
            return {"nprobe": int(self._ivf.nprobe)}
        return {}

    def _apply_params(self, params: dict[str, int]) -> None:
        if "efSearch" in params and self._hnsw is not None:
            self._hnsw.efSearch = int(params["efSearch"])
        if "nprobe" in params and self._ivf is not None:
            self._ivf.nprobe = int(params["nprobe"])
        if "k_factor" in params and self._refine is not None:
            self._refine.k_factor = float(params["k_factor"])

    @property
    def is_trained(self) -> bool:
        return bool(self._native.is_trained)

    def train(self, vectors: np.ndarray) -> None:
        x = self._check_vectors(vectors, "training vectors")
        spec = self._structure
        if spec.family == "flat" or (spec.family == "hnsw" and spec.encoding == "Flat"):
            return  # nothing to learn
        if self.is_trained:
            raise ConfigError(f"index '{spec}' is already trained (build a new one to retrain)")
        needed = max(spec.nlist, 2 ** spec.pq[1] if spec.pq else 1)
        if x.shape[0] < needed:
            raise ConfigError(
                f"index '{spec}' needs at least {needed} training vectors, got {x.shape[0]} "
                "(add more vectors at once, or choose a smaller nlist / PQ size)"
            )
        limit = max(TRAIN_POINTS_PER_LIST * spec.nlist, MIN_TRAIN_SAMPLE)
        if x.shape[0] > limit:
            rows = np.sort(np.random.default_rng(0).choice(x.shape[0], size=limit, replace=False))
            x = x[rows]
        self._native.train(x)

    def _add_vectors(self, vectors: np.ndarray) -> None:
        self._native.add(vectors)

    def _search_parameters(
        self, shared: np.ndarray | None, widen: bool, fetch: int, plain: bool
    ) -> tuple[Any, list[Any]]:
        """FAISS SearchParameters for one call, and the objects they point to (kept alive by the caller).
        ``plain``: the call goes to a flat storage index, which takes no HNSW / IVF knobs."""
        faiss = _faiss()
        keep: list[Any] = []
        if plain:
            params = faiss.SearchParameters()
        elif self._hnsw is not None:
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(int(self._hnsw.efSearch), fetch) if widen else int(self._hnsw.efSearch)
        elif self._ivf is not None:
            params = faiss.SearchParametersIVF()
            params.nprobe = int(self._ivf.nlist) if widen else int(self._ivf.nprobe)
        else:
            params = faiss.SearchParameters()
        if shared is not None:
            batch = faiss.IDSelectorBatch(np.ascontiguousarray(shared, dtype=np.int64))
            selector = faiss.IDSelectorNot(batch)
            keep += [batch, selector]
            params.sel = selector
        keep.append(params)
        if self._refine is not None and not plain:  # the refine wrapper passes these on to the IVF it wraps
            outer = faiss.IndexRefineSearchParameters()
            outer.k_factor = float(self._refine.k_factor)
            outer.base_index_params = params
            keep.append(outer)
            params = outer
        return params, keep

    def _search_positions(
        self, queries: np.ndarray, fetch: int, shared: np.ndarray | None, widen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        target = self._native
        if widen and self._hnsw is not None and fetch >= self.ntotal:
            # an HNSW graph can leave nodes unreachable; its storage scanned in full cannot
            target = _faiss().downcast_index(self._native.storage)
        if shared is None and not widen:
            distances, positions = target.search(queries, fetch)
        else:
            params, _alive = self._search_parameters(shared, widen, fetch, plain=target is not self._native)
            distances, positions = target.search(queries, fetch, params=params)
        scores = distances if self.metric == "ip" else -distances
        scores = np.where(positions >= 0, scores, -np.inf).astype(np.float32, copy=False)
        return positions.astype(np.int64, copy=False), scores

    def _payload(self) -> tuple[dict[str, np.ndarray], ExtraWriter | None]:
        blob = _faiss().serialize_index(self._native)

        def write(root: Path) -> None:
            target = root / INDEX_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as f:
                f.write(np.ascontiguousarray(blob, dtype=np.uint8).tobytes())

        return {}, write

    @classmethod
    def _restore(
        cls, spec: IndexSpec, dim: int, metric: str, artifact: Artifact, tensors: dict[str, np.ndarray]
    ) -> Index:
        faiss = _faiss()
        blob = np.fromfile(artifact.file(INDEX_FILE), dtype=np.uint8)
        try:
            native = faiss.deserialize_index(blob)
        except RuntimeError as exc:
            raise ArtifactError(f"{artifact.path}: cannot read the FAISS index ({exc})") from exc
        expected_metric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
        if native.d != dim or native.ntotal != tensors["ids"].shape[0] or native.metric_type != expected_metric:
            raise ArtifactError(
                f"{artifact.path}: FAISS index holds {native.ntotal} vectors of dim {native.d}, "
                f"manifest says dim {dim}, metric {metric} and {tensors['ids'].shape[0]} ids"
            )
        return cls(spec, dim, metric, native=native)


__all__ = ["FaissIndex"]
