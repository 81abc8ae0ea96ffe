"""Peer servers for benchmarks/serving.py: the same turborec model objects behind the servers users know.

Every peer loads the artifact with ``turborec.serving.loading.load_serving_model`` (the object
``turborec serve`` runs) and answers each batch its server forms with one
``model.recommend_batch(queries, Tier.FULL)`` call: the model work is identical, what differs is
HTTP, queueing, batching and process layout, which is what a user choosing a server compares.

- ``litserve``: a ``LitAPI`` with LitServe's ``max_batch_size``/``batch_timeout`` batching; its
  API server (FastAPI/uvicorn) and inference worker are separate processes joined by queues.
- ``triton``: NVIDIA Triton Inference Server through PyTriton: a Python model bound with Triton's
  dynamic batcher (``preferred_batch_size``, ``max_queue_delay_microseconds``, as Triton's docs
  advise: preferred sizes the model runs well at, a delay under the latency budget). Its wire
  format is KServe v2 (``POST /v2/models/turborec/infer``), so its requests carry the same users,
  recent items and k as inputs of that protocol (``triton_body``).
- ``ray``: Ray Serve, ``@serve.batch`` (``turborec.distributed.ray_serve``: the turborec app in a
  replica, Ray's batcher and proxy in place of ours), full tier only.

A peer whose package is missing is skipped with one line saying what to install
(``pip install 'turborec[bench]'``; PyTriton separately, see ``missing``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

PEER_PACKAGES = {"litserve": "litserve", "triton": "pytriton", "ray": "ray"}
INSTALL = {
    "litserve": "pip install 'turborec[bench]'  (litserve)",
    "ray": "pip install 'turborec[ray]'  (ray[serve])",
    # nvidia-pytriton 0.7.0 declares numpy<2 (turborec pins numpy 2): install it beside, without its pins
    "triton": "pip install --no-deps --target DIR nvidia-pytriton==0.7.0 tritonclient==2.73.0 sh typing_inspect "
              "python-rapidjson gevent geventhttpclient greenlet zope.event zope.interface brotli; "
              "TURBOREC_PYTRITON_PATH=DIR; and numpy 1 for its backend stub: pip install --no-deps --target DIR1 "
              "numpy==1.26.4; TURBOREC_PYTRITON_NUMPY1=DIR1",
}
TRITON_MODEL = "turborec"


def missing(variant: str) -> str | None:
    """Why ``variant`` cannot run here (None: it can)."""
    package = PEER_PACKAGES.get(variant)
    if package is None:
        return None
    extra = os.environ.get("TURBOREC_PYTRITON_PATH") if variant == "triton" else None
    if extra and Path(extra).is_dir():
        import sys

        if extra not in sys.path:
            sys.path.append(extra)  # after our own packages: pytriton must not shadow numpy & co.
    if importlib.util.find_spec(package) is None:
        return f"skipping {variant}: {package} is not installed ({INSTALL[variant]})"
    return None


def _queries(bodies: list[dict[str, Any]]) -> list[Any]:
    from turborec.serving.model import Query

    return [Query(b.get("user"), tuple(b.get("recent_items") or ()), int(b.get("k", 10))) for b in bodies]


def _load(artifact: Path) -> Any:
    import torch

    from turborec.serving.loading import load_serving_model
    from turborec.serving.model import Query
    from turborec.serving.tiers import Tier

    torch.set_num_threads(1)
    model = load_serving_model(artifact)
    for size in (1, 16, 64, 1):  # the same warm-up turborec's service does
        model.recommend_batch([Query(None, (), 10, exclude_seen=False)] * size, Tier.FULL)
    return model


def _items(ranked: Any) -> list[dict[str, Any]]:
    return [{"item": i, "score": float(s)} for i, s in zip(ranked.items, ranked.scores.tolist())]


# ------------------------------------------------------------------ LitServe
def _litserve_api() -> Any:
    """The LitAPI class (module level: LitServe pickles it into its inference worker process)."""
    import litserve as ls

    from turborec.serving.tiers import Tier

    class RecommendAPI(ls.LitAPI):  # type: ignore[misc]
        artifact: Path

        def setup(self, device: str) -> None:
            self.model = _load(self.artifact)

        # no annotations on these two: LitServe reads them to build its FastAPI endpoint (none: the raw JSON)
        def decode_request(self, request):  # type: ignore[no-untyped-def]
            return request

        def batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return list(inputs)

        def predict(self, bodies: Any) -> Any:
            if isinstance(bodies, dict):  # max_batch_size=1: one request
                return self.model.recommend_batch(_queries([bodies]), Tier.FULL).results[0]
            return self.model.recommend_batch(_queries(list(bodies)), Tier.FULL).results

        def unbatch(self, output: list[Any]) -> list[Any]:
            return output

        def encode_response(self, ranked):  # type: ignore[no-untyped-def]
            return {"items": _items(ranked)}

    RecommendAPI.__qualname__ = RecommendAPI.__name__ = "RecommendAPI"
    return RecommendAPI


def __getattr__(name: str) -> Any:  # pickle looks the class up by name in this module
    if name == "RecommendAPI":
        return _litserve_api()
    raise AttributeError(name)


def serve_litserve(artifact: Path, port: int, max_batch: int, max_wait_ms: float, options: dict[str, Any]) -> None:
    import litserve as ls

    api_class = globals()["RecommendAPI"] = _litserve_api()
    api = api_class(max_batch_size=max_batch, batch_timeout=max_wait_ms / 1000.0, api_path="/v1/recommend")
    api.artifact = artifact
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=int(options.get("workers", 1)),
                          timeout=30, healthcheck_path="/healthz", fast_queue=bool(options.get("fast_queue", False)))
    uvicorn = {k: options[k] for k in ("loop", "http") if k in options}  # LitServe hands these to uvicorn.Config
    server.run(host="127.0.0.1", port=port, num_api_servers=int(options.get("api_servers", 1)), log_level="warning",
               generate_client_file=False, **uvicorn)


# ------------------------------------------------------------------- Triton
RECENT_WIDTH = 8  # recent items per request as a fixed-width tensor (-1 pads): Triton batches equal shapes


def vocabularies(artifact: Path) -> tuple[list[str], list[str]]:
    """The artifact's user and item ids (strings), in vocabulary order."""
    from turborec._util.artifact import load_artifact

    art = load_artifact(artifact)
    vocab = "retriever/vocab" if art.kind == "pipeline" else "vocab"
    return ([str(u) for u in art.json(f"{vocab}/users.json")["ids"]],
            [str(i) for i in art.json(f"{vocab}/items.json")["ids"]])


def triton_body(body: dict[str, Any], users: dict[str, int], items: dict[str, int]) -> tuple[str, bytes]:
    """The same request in KServe v2 JSON, as numeric tensors (Triton's natural form): the user's and recent
    items' positions in the artifact's vocabularies (-1: none), and k."""
    user = users.get(body["user"], -1) if body.get("user") is not None else -1
    recent = [items.get(i, -1) for i in (body.get("recent_items") or ())][-RECENT_WIDTH:]
    recent += [-1] * (RECENT_WIDTH - len(recent))
    doc = {"inputs": [
        {"name": "user", "shape": [1, 1], "datatype": "INT64", "data": [user]},
        {"name": "recent", "shape": [1, RECENT_WIDTH], "datatype": "INT64", "data": recent},
        {"name": "k", "shape": [1, 1], "datatype": "INT32", "data": [int(body.get("k", 10))]},
    ]}
    return f"/v2/models/{TRITON_MODEL}/infer", json.dumps(doc).encode()


def serve_triton(artifact: Path, port: int, max_batch: int, max_wait_ms: float, options: dict[str, Any]) -> None:
    import sysconfig

    import numpy as np
    import pytriton
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from turborec.serving.model import Query
    from turborec.serving.tiers import Tier

    # installed with --target, PyTriton takes itself for an editable install and misses its bundled libraries;
    # and its Python-backend stub must load *this* interpreter's libpython (not another 3.x.y on the system),
    # or it imports this interpreter's standard library into the wrong runtime
    libs = [Path(pytriton.__file__).resolve().parents[1] / "nvidia_pytriton.libs",
            Path(sysconfig.get_config_var("LIBDIR") or "/nonexistent")]
    paths = [str(p) for p in libs if p.is_dir()] + [p for p in [os.environ.get("LD_LIBRARY_PATH")] if p]
    os.environ["LD_LIBRARY_PATH"] = ":".join(paths)
    # PyTriton's backend stub (a child of tritonserver) breaks under numpy 2 (garbled tensor sizes, measured
    # here): give the children a numpy 1 ahead on their path; this process keeps its own numpy
    stub_numpy = os.environ.get("TURBOREC_PYTRITON_NUMPY1")
    if stub_numpy:
        os.environ["PYTHONPATH"] = ":".join(p for p in (stub_numpy, os.environ.get("PYTHONPATH")) if p)
    model = _load(artifact)
    user_ids, item_ids = vocabularies(artifact)
    item_pos = {v: i for i, v in enumerate(item_ids)}

    @batch  # type: ignore[misc]
    def infer(user: np.ndarray, recent: np.ndarray, k: np.ndarray) -> dict[str, np.ndarray]:
        queries = [Query(user_ids[u] if u >= 0 else None, tuple(item_ids[i] for i in r if i >= 0), int(n))
                   for u, r, n in zip(user[:, 0].tolist(), recent.tolist(), k[:, 0].tolist())]
        results = model.recommend_batch(queries, Tier.FULL).results
        width = int(k.max())
        out_items = np.full((len(results), width), -1, dtype=np.int64)
        out_scores = np.zeros((len(results), width), dtype=np.float32)
        for row, ranked in enumerate(results):
            n = len(ranked.items)
            out_items[row, :n] = [item_pos[i] for i in ranked.items]
            out_scores[row, :n] = ranked.scores
        return {"items": out_items, "scores": out_scores}

    preferred = [int(s) for s in str(options.get("preferred", "16,32,64")).split(",") if s]
    config = TritonConfig(http_address="127.0.0.1", http_port=port, grpc_address="127.0.0.1", grpc_port=port + 1,
                          metrics_address="127.0.0.1", metrics_port=port + 2, allow_metrics=False,
                          http_thread_count=int(options.get("http_threads", 8)), log_verbose=0)
    with Triton(config=config) as triton:
        triton.bind(
            model_name=TRITON_MODEL, infer_func=infer,
            inputs=[Tensor(name="user", dtype=np.int64, shape=(1,)),
                    Tensor(name="recent", dtype=np.int64, shape=(RECENT_WIDTH,)),
                    Tensor(name="k", dtype=np.int32, shape=(1,))],
            outputs=[Tensor(name="items", dtype=np.int64, shape=(-1,)),
                     Tensor(name="scores", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(max_batch_size=max_batch, batcher=DynamicBatcher(
                max_queue_delay_microseconds=int(max_wait_ms * 1000),
                preferred_batch_size=[s for s in preferred if s <= max_batch])),
            strict=False,
        )
        triton.serve()


# ---------------------------------------------------------------------- Ray
def serve_ray(artifact: Path, port: int, max_batch: int, max_wait_ms: float, options: dict[str, Any]) -> None:
    import time

    from turborec.distributed.ray_serve import RayServeOptions, deploy, shutdown
    from turborec.serving import ServeSettings

    settings = ServeSettings(artifact=artifact, port=port, max_batch=max_batch, max_wait_ms=max_wait_ms,
                             adaptive_tiers=False, slo_p99_ms=10_000.0)  # Ray's batching and queue, no tiers
    ray_options = RayServeOptions(replicas=1, max_ongoing=int(options.get("max_ongoing", 128)),
                                  max_queued=int(options.get("max_queued", 256)))
    deploy(settings, ray_options, num_cpus=1)
    try:
        while True:
            time.sleep(1.0)
    finally:
        shutdown()


SERVERS = {"litserve": serve_litserve, "triton": serve_triton, "ray": serve_ray}

# What ``benchmarks/serving.py --peer-tuning`` tries for each server, most promising first (``--tuning-max``
# keeps the first N); the best goes to the main table. ``max_batch``/``max_wait_ms``: the server's batching
# (LitServe ``max_batch_size``/``batch_timeout``, Triton's dynamic batcher, Ray's ``@serve.batch``); the rest are
# the adapters' options above. uvicorn picks uvloop and httptools where installed (LitServe and the naive
# endpoint both run on it), so those are the baseline, not a variant.
TUNINGS: dict[str, list[dict[str, Any]]] = {
    "litserve": [
        {},  # LitServe's multiprocessing queues, one API server and one inference worker; batch 64 / 1 ms
        {"fast_queue": True},  # ZeroMQ between the API server and the worker
        {"fast_queue": True, "max_batch": 16, "max_wait_ms": 0.5},
        {"fast_queue": True, "max_batch": 8, "max_wait_ms": 0.5},
        {"fast_queue": True, "max_batch": 64, "max_wait_ms": 5.0},
        {"fast_queue": True, "api_servers": 2},
        {"fast_queue": True, "workers": 2},  # two inference workers (workers_per_device)
    ],
    "naive": [
        {"handler": "async"},  # the model called on the event loop
        {"handler": "sync"},  # FastAPI's thread pool
    ],
    "ray": [{}, {"max_batch": 16, "max_wait_ms": 0.5}, {"max_ongoing": 32, "max_queued": 64}],
    "triton": [{}, {"preferred": "8,16", "max_wait_ms": 0.5}, {"http_threads": 2}],
}
