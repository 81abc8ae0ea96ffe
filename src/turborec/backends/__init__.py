"""Fast inference of model parts: ``make_runner(kind, module, example_inputs, threads=1)``.

Kinds (see :func:`runner_kinds` for each one's tolerance against eager PyTorch):
``torch-eager``, ``torch-compile``, ``onnx-fp32``, ``onnx-int8`` (and GPU kinds when
``turborec.backends.gpu`` registers them). A runner maps ``{name: array [B, ...]}`` to
``float32 [B, ...]``; :class:`UserEmbeddingCache` lets serving skip the user tower for users
whose history has not changed; :func:`traced_for_inference` freezes a small net's Python away
for serving (checked to match eager exactly).
"""

from turborec.backends.base import Inputs, Runner, Tolerance, tile_inputs
from turborec.backends.cache import CacheStats, UserEmbeddingCache
from turborec.backends.registry import make_runner, register_runner, runner_class, runner_kinds
from turborec.backends.tracing import traced_for_inference

__all__ = [
    "CacheStats",
    "Inputs",
    "Runner",
    "Tolerance",
    "UserEmbeddingCache",
    "make_runner",
    "register_runner",
    "runner_class",
    "runner_kinds",
    "tile_inputs",
    "traced_for_inference",
]
