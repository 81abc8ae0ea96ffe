"""Nearest-neighbour retrieval over item vectors: numpy in, (ids, scores) out; knows no model.

>>> index = make_index("HNSW32|efSearch=128", dim=64)        # inner product by default
>>> index.add(item_vectors)                                   # ids 0..n-1 unless given
>>> ids, scores = index.search(user_vectors, k=100, exclude=seen_items_per_user)
>>> index.save("artifacts/index"); index = load_index("artifacts/index")

Specs: ``Exact`` (numpy), ``Flat``, ``HNSW<M>``, ``HNSW<M>,SQ8``, ``IVF<n>,Flat``, ``IVF<n>,SQ8``,
``IVF<n>,PQ<m>``; runtime knobs after ``|`` (``efSearch``, ``nprobe``). See :mod:`.base` for the
search contract (clamping of k, exclusions, -1 / -inf padding).
"""

from turborec.retrieval.base import METRICS, Index
from turborec.retrieval.evaluate import recall_at_k, recall_of_ids
from turborec.retrieval.registry import index_class, load_index, make_index, register_index
from turborec.retrieval.spec import IndexSpec, parse_spec

__all__ = [
    "METRICS",
    "Index",
    "IndexSpec",
    "index_class",
    "load_index",
    "make_index",
    "parse_spec",
    "recall_at_k",
    "recall_of_ids",
    "register_index",
]
