"""On-device re-ranking with ONNX Runtime: after every click, a new user vector and new candidate scores.

Per click the runtime (1) appends the clicked candidates to the user's pre-session history and runs
``user_model.onnx`` (embedding gathers, masked mean, int8 MLP) for the session user vector, then
(2) runs ``reranker.onnx`` over the candidates' int8 embeddings. Everything the models need came in
the bundle, so there is no round trip. The browser page (``web/edge.js``) does the same steps with
onnxruntime-web, from the same files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from turborec.edge.bundle import EdgeBundle
from turborec.errors import ArtifactError, ConfigError, DependencyError

USER_MODEL_INPUTS = ("history", "input_q", "input_scale", "input_bias", "user_part")
RERANKER_INPUTS = ("user_vec", "server_vec", "recent", "item_q", "item_scale", "item_bias", "prior")
_SESSION_TENSOR_INPUTS = ("input_q", "input_scale", "input_bias", "item_q", "item_scale", "item_bias", "prior")


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise DependencyError("onnxruntime", "onnx") from exc
    return onnxruntime


class EdgeReranker:
    """Re-ranks one session's candidates as the user clicks; numpy in, numpy out.

    >>> reranker = EdgeReranker(load_bundle("bundle/"))
    >>> ids, scores = reranker.rerank(clicked=[318, 296], k=10)

    ``threads`` is ONNX Runtime's intra-op thread count (1: a phone's one spare core).
    :meth:`use_bundle` swaps in the next session's candidates without reloading the models, and
    refuses a bundle exported from another model version.
    """

    def __init__(self, bundle: EdgeBundle, threads: int = 1) -> None:
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        where = str(bundle.path) if bundle.path is not None else "edge bundle"
        self._user_session = self._session(ort, bundle.user_model, options, f"{where}: user_model.onnx")
        self._reranker_session = self._session(ort, bundle.reranker, options, f"{where}: reranker.onnx")
        self._user_inputs = self._input_names(self._user_session, USER_MODEL_INPUTS, where, "user_model.onnx")
        self._reranker_inputs = self._input_names(self._reranker_session, RERANKER_INPUTS, where, "reranker.onnx")
        self.model_version = bundle.model_version
        self.bundle = bundle
        self._static: dict[str, np.ndarray] = {}
        self.use_bundle(bundle)

    @staticmethod
    def _session(ort: Any, model: bytes, options: Any, label: str) -> Any:
        try:
            return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for an unreadable graph
            raise ArtifactError(f"{label}: ONNX Runtime cannot load the model ({str(exc).splitlines()[0]})") from exc

    @staticmethod
    def _input_names(session: Any, known: Sequence[str], where: str, label: str) -> tuple[str, ...]:
        names = tuple(i.name for i in session.get_inputs())
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ArtifactError(f"{where}: {label} has inputs {unknown} this runtime does not provide")
        return names

    def use_bundle(self, bundle: EdgeBundle) -> None:
        """Serve another session's candidates with the loaded models (same model version only)."""
        if bundle.model_version != self.model_version:
            raise ArtifactError(
                f"{bundle.path or 'edge bundle'}: bundle is for model version {bundle.model_version!r}, "
                f"but the loaded models are version {self.model_version!r}"
            )
        t = bundle.tensors
        static = {name: t[name] for name in _SESSION_TENSOR_INPUTS}
        static["user_part"] = t["user_part"][None, :]
        static["server_vec"] = t["server_vec"][None, :]
        self._static = static
        self._ids = np.asarray(bundle.item_ids)
        self._history = np.arange(bundle.n_candidates, bundle.n_candidates + len(bundle.history_ids), dtype=np.int64)
        self.bundle = bundle

    # ---------------------------------------------------------------- inputs
    def _history_row(self, clicked_rows: np.ndarray) -> np.ndarray:
        """[1, L] int32: pre-session history then clicks, the most recent L, oldest first, -1 padded."""
        width = self.bundle.history_len
        seq = np.concatenate([self._history, clicked_rows])[-width:]
        out = np.full((1, width), -1, dtype=np.int32)
        out[0, : len(seq)] = seq
        return out

    def _recent_row(self, clicked_rows: np.ndarray) -> np.ndarray:
        """[1, K] int32: the last K clicked candidates, newest first, -1 padded."""
        width = self.bundle.recent_len
        newest = clicked_rows[::-1][:width]
        out = np.full((1, width), -1, dtype=np.int32)
        out[0, : len(newest)] = newest
        return out

    # ------------------------------------------------------------- inference
    def user_vector(self, clicked: Sequence[Any] = (), unknown: str = "raise") -> np.ndarray:
        """The session user vector [d] after ``clicked`` (candidate ids, oldest first)."""
        rows = self.bundle.local_index(clicked, unknown)
        return self._user_vector(rows)[0]

    def _user_vector(self, rows: np.ndarray) -> np.ndarray:
        feeds = {"history": self._history_row(rows), **self._static}
        return np.asarray(self._user_session.run(None, {n: feeds[n] for n in self._user_inputs})[0])

    def scores(self, clicked: Sequence[Any] = (), unknown: str = "raise") -> np.ndarray:
        """Scores [C] of every candidate (row order of ``bundle.item_ids``) after ``clicked``."""
        return self._scores(self.bundle.local_index(clicked, unknown))

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        feeds = {"user_vec": self._user_vector(rows), "recent": self._recent_row(rows), **self._static}
        out = self._reranker_session.run(None, {n: feeds[n] for n in self._reranker_inputs})[0]
        return np.asarray(out, dtype=np.float32)[0]

    def rerank(
        self, clicked: Sequence[Any] = (), k: int | None = None, exclude_clicked: bool = True, unknown: str = "raise"
    ) -> tuple[np.ndarray, np.ndarray]:
        """(candidate ids, scores), best first; clicked items left out unless ``exclude_clicked=False``.

        ``k`` limits the list (default: every remaining candidate). An id that is not a candidate raises
        :class:`turborec.errors.UnknownIdError` (``unknown="ignore"`` drops it instead).
        """
        order, scores = self._rank(self.bundle.local_index(clicked, unknown), k, exclude_clicked)
        return self._ids[order], scores[order]

    def rank_rows(self, clicked_rows: np.ndarray, k: int | None = None, exclude_clicked: bool = True) -> np.ndarray:
        """Candidate rows best first, for clicks given as candidate rows (the evaluation's fast path)."""
        return self._rank(np.asarray(clicked_rows, dtype=np.int64), k, exclude_clicked)[0]

    def _rank(self, rows: np.ndarray, k: int | None, exclude_clicked: bool) -> tuple[np.ndarray, np.ndarray]:
        if k is not None and (not isinstance(k, (int, np.integer)) or k <= 0):
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        scores = self._scores(rows)
        ranked = scores
        if exclude_clicked and len(rows):
            ranked = scores.copy()
            ranked[rows] = -np.inf
        n = len(ranked) - (len(np.unique(rows)) if exclude_clicked else 0)
        n = n if k is None else min(k, n)
        if n <= 0:
            return np.zeros(0, dtype=np.int64), scores
        top = np.argpartition(-ranked, n - 1)[:n] if n < len(ranked) else np.arange(len(ranked))
        return top[np.argsort(-ranked[top], kind="stable")], scores
