"""turborec.serving: the real-time recommendation service.

HTTP (``app``) -> ``RecommendService`` -> admission control -> micro-batching
(``batching.MicroBatcher``, a pure state machine, driven by ``driver``) ->
``ServingModel`` (``NetServingModel`` over any retrieval net), with user state
in a ``Store`` and the tier chosen by the ``SLOController``.

Import the parts from their modules; only the entry points are re-exported here
(lazily, so ``import turborec.serving`` stays light).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from turborec.serving.settings import ServeSettings

if TYPE_CHECKING:
    from turborec.serving.server import run_server

__all__ = ["ServeSettings", "run_server"]


def __getattr__(name: str) -> Any:
    if name == "run_server":
        from turborec.serving.server import run_server

        return run_server
    raise AttributeError(name)
