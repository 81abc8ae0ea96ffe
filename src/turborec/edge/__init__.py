"""turborec.edge: on-device re-ranking with numpy and ONNX Runtime only (no torch, no other turborec layer).

>>> from turborec.edge import EdgeReranker, load_bundle
>>> reranker = EdgeReranker(load_bundle("bundle/"), threads=1)
>>> ids, scores = reranker.rerank(clicked=[318, 296], k=10)

Bundles are written by ``turborec.export.export_edge_bundle`` (or ``turborec export DIR --edge``);
``web/`` holds the same runtime for browsers (onnxruntime-web), served by :class:`~turborec.edge.demo.DemoServer`.
"""

from turborec.edge.bundle import EDGE_FORMAT_VERSION, EdgeBundle, load_bundle
from turborec.edge.runtime import EdgeReranker

__all__ = ["EDGE_FORMAT_VERSION", "EdgeBundle", "EdgeReranker", "load_bundle"]
