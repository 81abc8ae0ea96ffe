"""The parts a tuned configuration (``ServingKnobs``) names, for :class:`~turborec.serving.net_model.NetServingModel`.

A tuned artifact may name a user-tower backend (ONNX Runtime, torch.compile) and a retrieval index
(FAISS HNSW / IVF, or an exact one): :func:`build_serving_model` makes the runner and index and hands
them to the one serving model. ``turborec tune`` measures exactly this path, and ``turborec serve``
builds it from a tuned artifact.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

import numpy as np

from turborec.backends import Runner, make_runner
from turborec.retrieval import Index, make_index
from turborec.serving.knobs import SERVICE_EXACT, ServingKnobs
from turborec.serving.net_model import (
    NetServingModel,
    UserTowerPart,
    reduced_search_params,
    serving_model_from_view,
    tower_history_len,
)
from turborec.train.recommender import Recommender


def user_tower_runner(rec: Recommender, backend: str, history_len: int) -> Runner | None:
    """The user tower of ``rec`` as a ``backend`` runner (None for eager PyTorch: the net is called as is)."""
    if backend == "torch-eager":
        return None
    net = rec.fitted_net
    example = {"users": np.array([0, -1], dtype=np.int64), "history": np.full((2, history_len), -1, dtype=np.int64)}
    example["history"][0, : min(3, history_len)] = np.arange(min(3, history_len))
    with _quiet_native_output():  # a failed ONNX export dumps the whole TorchScript graph from C++
        return make_runner(backend, UserTowerPart(net).eval(), example, threads=1, warmup=True)


@contextlib.contextmanager
def _quiet_native_output() -> Iterator[None]:
    """Send what native code writes to stdout / stderr to a scratch file for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def build_index(spec: str, item_vectors: np.ndarray) -> Index | None:
    """An index over the catalog for ``spec`` (None for the service's own exact matmul)."""
    if spec == SERVICE_EXACT:
        return None
    vecs = np.ascontiguousarray(item_vectors, dtype=np.float32)
    index = make_index(spec, dim=vecs.shape[1], metric="ip")
    index.add(vecs)
    return index


def build_serving_model(
    rec: Recommender,
    knobs: ServingKnobs,
    version: str,
    *,
    index: Index | None = None,
    runner: Runner | None = None,
    history_len: int = 50,
) -> NetServingModel:
    """The model the service runs for ``knobs``: the estimator's servable view with the user tower on the
    knobs' backend (eager: its trace in-process) and the catalog behind the knobs' index (exact: the
    serving model's own exact index). A plain artifact's default knobs give exactly that default."""
    view = rec.servable()
    if runner is None and knobs.backend != "torch-eager":
        runner = user_tower_runner(rec, knobs.backend, tower_history_len(view, history_len))
    if index is None and knobs.index != SERVICE_EXACT:
        index = build_index(knobs.index, rec.item_vectors())
    return serving_model_from_view(view, version, history_len, runner=runner, index=index)


__all__ = [
    "UserTowerPart",
    "build_index",
    "build_serving_model",
    "reduced_search_params",
    "user_tower_runner",
]
