"""Estimators in the style of ``implicit``: ``fit`` / ``recommend`` / ``similar_items`` / ``save``.

An estimator owns a network (``turborec.models``), the vocabularies, and each
user's training history (for filtering seen items and as the user tower's input).
Subclasses only say how to build and fit their network.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import torch

from turborec._util.artifact import WEIGHTS, Artifact, load_artifact, save_artifact
from turborec.data.interactions import Interactions, ItemFeatures
from turborec.data.vocab import Vocabulary, unknown_summary
from turborec.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    NotFittedError,
    TurborecError,
    UnknownIdError,
    UnknownIdWarning,
)
from turborec.metrics.ranking import RankingReport, evaluate_ranking, top_k_from_scores
from turborec.models.base import NetConfig, RetrievalNet, load_unique_state, unique_state
from turborec.train.history import Histories, pad_lists
from turborec.train.trainer import TrainConfig, resolve_device, seed_everything
from turborec.train.validate import check_declared_dims, check_histories, check_state_shapes

R = TypeVar("R", bound="Recommender")
# What recommend() does with user ids the model never saw, the same in Python, the CLI and HTTP:
# "popular" serves the most popular training items, "skip" leaves those users out, "error" raises.
UNKNOWN_RULES = ("popular", "skip", "error")
DEFAULT_UNKNOWN = "popular"


def resolve_ids(vocab: Vocabulary, ids: Sequence[Any], unknown: str, what: str = "user") -> np.ndarray:
    """Indices of ``ids`` (-1 where unknown) after applying the cold-start rule ``unknown``.

    "error" raises UnknownIdError naming up to ten of them; "popular" and "skip" warn with
    UnknownIdWarning (how many, up to ten named).
    """
    if unknown not in UNKNOWN_RULES:
        raise ConfigError(f"unknown={unknown!r}: expected one of {', '.join(UNKNOWN_RULES)}")
    idx = vocab.encode(ids, unknown="minus1")
    missing = np.flatnonzero(idx < 0)
    if len(missing):
        names = [ids[int(j)] for j in missing]
        summary = unknown_summary(what, names)
        if unknown == "error":
            raise UnknownIdError(summary)
        action = "served the most popular items" if unknown == "popular" else "left out"
        warnings.warn(f"{summary}: {action} (unknown={unknown!r})", UnknownIdWarning, stacklevel=3)
    return idx


def known_rows(
    users: Vocabulary, items: Vocabulary, ids: Sequence[Any], unknown: str,
    exclude: Sequence[Sequence[Any]] | None, block: np.ndarray,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """User indices after the cold-start rule (rows of skipped users dropped) and each row's excluded item indices."""
    if exclude is not None and len(exclude) != len(ids):
        raise ConfigError(f"exclude has {len(exclude)} rows for {len(ids)} users")
    idx = resolve_ids(users, ids, unknown)
    rows = []
    for r in range(len(ids)):
        extra = items.encode(list(exclude[r]), unknown="minus1") if exclude is not None and len(exclude[r]) else None
        rows.append(block if extra is None else np.union1d(block, extra[extra >= 0]))
    if unknown == "skip":
        keep = np.flatnonzero(idx >= 0)
        return idx[keep], [rows[int(k)] for k in keep]
    return idx, rows


def fill_unknown(
    idx: np.ndarray, rows_ex: list[np.ndarray],
    known: Callable[[np.ndarray, list[np.ndarray]], tuple[np.ndarray, np.ndarray]],
    popular: Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray]], N: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, scores) per row: ``known`` for known users, ``popular`` for the rest (-1 rows)."""
    is_known = idx >= 0
    if is_known.all():
        return known(idx, rows_ex)
    width = None
    parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if is_known.any():
        sel = np.flatnonzero(is_known)
        top, sc = known(idx[sel], [rows_ex[int(r)] for r in sel])
        width = top.shape[1]
        parts.update({int(r): (top[j], sc[j]) for j, r in enumerate(sel)})
    for r in np.flatnonzero(~is_known).tolist():
        parts[r] = popular(N, rows_ex[r])
    width = min(len(v[0]) for v in parts.values()) if width is None else width
    top = np.stack([parts[r][0][:width] for r in range(len(idx))])
    sc = np.stack([parts[r][1][:width] for r in range(len(idx))]).astype(np.float32)
    return top, sc


def as_interactions(data: Any, columns: Mapping[str, str | None] | None = None) -> Interactions:
    """``data`` itself when it is Interactions; a pandas or polars DataFrame read with ``columns``."""
    if isinstance(data, Interactions):
        if columns:
            raise ConfigError("columns= only applies to DataFrame input")
        return data
    module = type(data).__module__.split(".")[0]
    if module in ("pandas", "polars"):
        return Interactions.from_frame(data, **dict(columns or {}))
    raise DataError(f"expected Interactions or a pandas / polars DataFrame, got {type(data).__name__}")
_ESTIMATORS: dict[str, type[Recommender]] = {}


_NARROW_INTS = (torch.int8, torch.int16, torch.int32)


def narrow_ints(t: torch.Tensor) -> torch.Tensor:
    """An int64 tensor in the narrowest signed integer dtype that holds its values (other tensors as they are).

    Artifacts store index data (training histories, per-item feature tokens) this way: as int64 it
    can outweigh a compressed model several times over. Loading widens it again (histories are read
    as int64; ``load_state_dict`` copies into the network's own int64 buffers), so artifacts written
    with int64 data load the same.
    """
    if t.dtype != torch.int64 or t.numel() == 0:
        return t
    low, high = int(t.min()), int(t.max())
    for dtype in _NARROW_INTS:
        info = torch.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return t.to(dtype)
    return t


def register_estimator(name: str) -> Callable[[type[R]], type[R]]:
    def deco(cls: type[R]) -> type[R]:
        cls.name = name
        _ESTIMATORS[name] = cls
        return cls

    return deco


def estimator_class(name: str) -> type[Recommender]:
    from turborec.train import dae, estimators  # noqa: F401  (registers the built-in estimators)

    try:
        return _ESTIMATORS[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}' (known: {', '.join(sorted(_ESTIMATORS))})") from None


def known_estimators() -> list[str]:
    from turborec.train import dae, estimators  # noqa: F401

    return sorted(_ESTIMATORS)


@dataclass(frozen=True)
class ServableView:
    """What a service needs of a fitted retrieval model, and nothing of how it was trained.

    ``net.user_vectors(users [B], history [B, L]) -> [B, d]`` is the user tower and ``net.item_vectors()``
    the catalog's vectors; ``users`` / ``items`` map external ids to rows; user ``u``'s training items,
    oldest first, are ``seen_items[seen_offsets[u]:seen_offsets[u + 1]]`` (filtered from answers, and the
    tail of the user tower's input); ``history_len`` is how many recent items the tower reads (None: all).
    Built by :meth:`Recommender.servable`, which checks it (:meth:`validate`) before a service uses it.
    """

    users: Vocabulary
    items: Vocabulary
    net: RetrievalNet
    seen_offsets: np.ndarray  # int64 [n_users + 1]
    seen_items: np.ndarray  # int64 [n_seen], item rows
    history_len: int | None

    @property
    def popularity(self) -> np.ndarray:
        """Training interactions per item, float64 [n_items] (the popular tier's order)."""
        return np.bincount(self.seen_items, minlength=len(self.items)).astype(np.float64)

    def recent_items(self, users: np.ndarray, length: int | None = None) -> np.ndarray:
        """[B, L] each user's latest ``length`` training items (default the tower's window; all when None),
        oldest first, -1 padded: the user tower's input before live events."""
        window = self.history_len if length is None else length
        return Histories(self.seen_offsets, self.seen_items, len(self.items)).padded(users, window)

    def validate(self) -> ServableView:
        """Raise ArtifactError when the parts disagree (a service would index out of range or serve junk)."""
        n_users, n_items = len(self.users), len(self.items)
        if self.net.n_items != n_items:
            raise ArtifactError(f"the item vocabulary has {n_items} ids, the network {self.net.n_items} items")
        check_histories("servable view", self.seen_offsets, self.seen_items, n_users, n_items)
        return self


class Recommender(abc.ABC):
    """Base estimator. ``config`` types the network; ``train_config`` the optimisation."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[NetConfig]]
    default_train: ClassVar[TrainConfig] = TrainConfig()

    def __init__(self, config: NetConfig | None = None, train: TrainConfig | None = None, **overrides: Any):
        cfg = config or self.config_class()
        tcfg = train or self.default_train
        net_fields = {f.name for f in fields(cfg)}
        train_fields = {f.name for f in fields(tcfg)}
        net_over = {k: v for k, v in overrides.items() if k in net_fields}
        train_over = {k: v for k, v in overrides.items() if k in train_fields}
        unknown = set(overrides) - net_fields - train_fields
        if unknown:
            known = sorted(net_fields | train_fields)
            raise ConfigError(f"{self.name}: unknown option(s) {sorted(unknown)}; known: {', '.join(known)}")
        self.config = replace(cfg, **net_over)  # type: ignore[type-var]
        self.train_config = replace(tcfg, **train_over)
        self.net: RetrievalNet | None = None
        self.users: Vocabulary | None = None
        self.items: Vocabulary | None = None
        self.histories: Histories | None = None
        self.item_features: ItemFeatures | None = None
        self.metrics: dict[str, Any] = {}
        self.fit_seconds: float = 0.0
        # records of compression transforms applied to ``net`` (written by turborec.compress),
        # replayed on load through LoadHooks so pruned / dynamically quantized nets rebuild
        self.transforms: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ fitting
    def fit(self: R, train: Interactions | Any, valid: Interactions | Any | None = None, *, warm_start: bool = False,
            columns: Mapping[str, str | None] | None = None) -> R:
        """Fit on ``train``; ``valid`` (same vocabularies) drives early stopping where the model trains.

        ``train`` and ``valid`` may be pandas or polars DataFrames with one row per event; their
        columns default to user_id, item_id, rating, timestamp (rating and timestamp optional) and
        ``columns`` renames them, e.g. ``columns={"user": "uid", "item": "sku"}``. A DataFrame
        ``valid`` is mapped onto ``train``'s ids (events of unseen users or items are dropped).

        ``warm_start=True`` continues training the current network (fine-tuning after compression)
        instead of building a new one; ``train`` must use the vocabularies it was fitted with.
        """
        import time

        train = as_interactions(train, columns)
        if valid is not None and not isinstance(valid, Interactions):
            valid = as_interactions(valid, columns).with_vocabularies(train.users, train.items)

        if len(train) == 0:
            raise DataError("cannot fit on an empty set of interactions")
        if valid is not None and (valid.users != train.users or valid.items != train.items):
            raise DataError("train and valid must share vocabularies (split one Interactions)")
        keep = warm_start and self.net is not None
        if keep and (train.users != self.users or train.items != self.items):
            raise DataError("warm_start: train must use the vocabularies the model was fitted with")
        seed_everything(self.train_config.seed)
        self.users, self.items = train.users, train.items
        self.item_features = train.item_features
        self.histories = Histories.from_interactions(train)
        if not keep:
            self.net = self._build_net(self.dims())
            self._after_build()
        assert self.net is not None
        self.net.to(self.device)
        start = time.perf_counter()
        self._fit(train, valid)
        self.fit_seconds = time.perf_counter() - start
        self.net.eval()
        return self

    def dims(self) -> dict[str, int]:
        assert self.users is not None and self.items is not None
        dims = {"n_users": len(self.users), "n_items": len(self.items)}
        if self.item_features is not None:
            dims["n_tokens"] = len(self.item_features.vocab)
            dims["token_width"] = int(np.diff(self.item_features.offsets).max(initial=0))
        return dims

    @abc.abstractmethod
    def _build_net(self, dims: Mapping[str, int]) -> RetrievalNet: ...

    def unfitted_net(self, dims: Mapping[str, int]) -> RetrievalNet:
        """A fresh network of this estimator's configuration for ``dims`` (a fitted model's ``dims()``):
        what ``fit`` would train, e.g. to size a compressed or distilled variant before training it."""
        return self._build_net(dims)

    @abc.abstractmethod
    def _fit(self, train: Interactions, valid: Interactions | None) -> None: ...

    def _after_build(self) -> None:
        """Hook to set non-trained buffers (item tokens...) after building a net, also on load."""
        setter = getattr(self.net, "set_item_tokens", None)
        if self.item_features is not None and setter is not None:
            setter(torch.from_numpy(self.item_features.padded()))

    @property
    def device(self) -> torch.device:
        return resolve_device(self.train_config.device)

    # ---------------------------------------------------------------- inference
    def _require(self) -> RetrievalNet:
        if self.net is None or self.histories is None:
            raise NotFittedError(f"{self.name or type(self).__name__} is not fitted; call fit() or load()")
        return self.net

    @property
    def fitted_net(self) -> RetrievalNet:
        """The fitted network (NotFittedError before ``fit`` / ``load``)."""
        return self._require()

    def servable(self) -> ServableView:
        """The parts a service runs (:class:`ServableView`), checked."""
        net = self._require()
        assert self.users is not None and self.items is not None and self.histories is not None
        length = self.history_len
        return ServableView(self.users, self.items, net, self.histories.offsets, self.histories.items,
                            None if length is None else int(length)).validate()

    @property
    def history_len(self) -> int | None:
        """How many recent items the net reads (None = all: EASE)."""
        return getattr(self.config, "history_len", None) if self._require().uses_history else 1

    def user_histories(self, user_idx: np.ndarray) -> np.ndarray:
        assert self.histories is not None
        return self.histories.padded(user_idx, self.history_len)

    @torch.no_grad()
    def score_users(self, user_idx: np.ndarray, history: np.ndarray | None = None) -> np.ndarray:
        """Scores [B, n_items] for user indices (-1 = anonymous) and optional explicit histories."""
        net = self._require()
        users = np.asarray(user_idx, dtype=np.int64)
        hist = self.user_histories(np.maximum(users, 0)) if history is None else history
        u = torch.from_numpy(users).to(self.device)
        h = torch.from_numpy(np.asarray(hist, dtype=np.int64)).to(self.device)
        return net(u, h).float().cpu().numpy()

    @torch.no_grad()
    def user_vectors(self, user_idx: np.ndarray, history: np.ndarray | None = None) -> np.ndarray:
        net = self._require()
        users = np.asarray(user_idx, dtype=np.int64)
        hist = self.user_histories(np.maximum(users, 0)) if history is None else history
        u = torch.from_numpy(users).to(self.device)
        h = torch.from_numpy(np.asarray(hist, dtype=np.int64)).to(self.device)
        return net.user_vectors(u, h).float().cpu().numpy()

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        return self._require().item_vectors().float().cpu().numpy()

    def _topk(self, scores: np.ndarray, rows: np.ndarray | None, N: int, exclude: Sequence[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        if N <= 0:
            raise ConfigError(f"N must be a positive integer, got {N}")
        if rows is not None:
            assert self.histories is not None
            for r, u in enumerate(rows):
                if u >= 0:
                    scores[r, self.histories.of(int(u))] = -np.inf
        if exclude is not None:
            for r, ex in enumerate(exclude):
                if len(ex):
                    scores[r, ex] = -np.inf
        top = top_k_from_scores(scores, N)
        return top, np.take_along_axis(scores, top, axis=1)

    def recommend(
        self,
        user_ids: Sequence[Any] | np.ndarray | Any,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items: Sequence[Any] | None = None,
        *,
        unknown: str = DEFAULT_UNKNOWN,
        exclude: Sequence[Sequence[Any]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-N external item ids and scores for external user ids (one id or a batch).

        ``filter_items`` are left out for every user, ``exclude[r]`` (external item ids) for row r
        only (e.g. a validation split). Items scoring ``-inf`` (filtered) only appear when fewer
        than N remain. Users the model never saw follow ``unknown``: "popular" (default) gives
        them the most popular training items, scored by their share of training events; "skip"
        leaves their rows out (a single unknown id returns empty arrays); "error" raises
        UnknownIdError. The first two warn (UnknownIdWarning) with how many were unknown,
        naming up to ten.
        """
        self._require()
        assert self.users is not None and self.items is not None
        single = np.isscalar(user_ids) or isinstance(user_ids, str)
        ids = [user_ids] if single else list(user_ids)  # type: ignore[arg-type]
        block = np.zeros(0, dtype=np.int64)
        if filter_items is not None:
            block = self.items.encode(list(filter_items), unknown="minus1")
            block = block[block >= 0]
        idx, rows_ex = known_rows(self.users, self.items, ids, unknown, exclude, block)

        def known(users: np.ndarray, ex: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            return self._topk(self.score_users(users), users if filter_already_liked_items else None, N, ex)

        top, sc = fill_unknown(idx, rows_ex, known, self.popular_items, N)
        out_ids = self.items.decode(top)
        if single:
            if len(idx) == 0:
                return out_ids.reshape(-1)[:0], sc.reshape(-1)[:0]
            return out_ids[0], sc[0]
        return out_ids, sc

    def popular_items(self, N: int, block: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the N most popular training items (minus ``block``) and their share of training events."""
        assert self.histories is not None and self.items is not None
        counts = np.bincount(self.histories.items, minlength=len(self.items)).astype(np.float32)
        share = counts / max(float(counts.sum()), 1.0)
        empty = np.zeros(0, dtype=np.int64)
        top, sc = self._topk(share[None, :].copy(), None, N, [empty if block is None else block])
        return top[0], sc[0]

    def recommend_for_history(
        self, histories: Sequence[Sequence[Any]], N: int = 10, filter_history: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Anonymous users described by their recent external item ids (oldest first)."""
        self._require()
        assert self.items is not None
        lists = [self.items.encode(list(h), unknown="minus1") for h in histories]
        lists = [x[x >= 0] for x in lists]
        padded = pad_lists(lists, self.history_len)
        scores = self.score_users(np.full(len(lists), -1), padded)
        top, sc = self._topk(scores, None, N, lists if filter_history else None)
        return self.items.decode(top), sc

    def similar_items(self, item_ids: Sequence[Any] | Any, N: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Most similar items by cosine of item vectors (the query item itself excluded)."""
        self._require()
        assert self.items is not None
        single = np.isscalar(item_ids) or isinstance(item_ids, str)
        ids = [item_ids] if single else list(item_ids)  # type: ignore[arg-type]
        idx = self.items.encode(ids)
        vecs = self._similarity_vectors()
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        unit = vecs / np.maximum(norms, 1e-12)
        scores = unit[idx] @ unit.T
        top, sc = self._topk(scores, None, N, [np.array([i]) for i in idx])
        out = self.items.decode(top)
        return (out[0], sc[0]) if single else (out, sc)

    def _similarity_vectors(self) -> np.ndarray:
        return self.item_vectors()

    # --------------------------------------------------------------- evaluation
    def evaluate(
        self, test: Interactions, exclude: Sequence[Interactions] = (), ks: Sequence[int] = (10, 20)
    ) -> RankingReport:
        """Full-ranking metrics on ``test``; training items and every set in ``exclude`` are masked."""
        self._require()
        assert self.histories is not None
        if test.users != self.users or test.items != self.items:
            test = test.with_vocabularies(self.users, self.items)  # type: ignore[arg-type]
        mask = self.histories.to_csr()
        for part in exclude:
            if part.users != self.users or part.items != self.items:
                part = part.with_vocabularies(self.users, self.items)  # type: ignore[arg-type]
            mask = mask + part.to_csr()
        return evaluate_ranking(self.score_users, test.to_csr(), exclude=mask.tocsr(), ks=ks)

    # -------------------------------------------------------------- persistence
    def save(self, path: str | Path, metrics: Mapping[str, Any] | None = None) -> Path:
        net = self._require()
        assert self.users is not None and self.items is not None and self.histories is not None
        tensors: dict[str, Any] = {f"net.{k}": narrow_ints(v) for k, v in unique_state(net).items()}
        tensors["history.offsets"] = narrow_ints(torch.from_numpy(self.histories.offsets))
        tensors["history.items"] = narrow_ints(torch.from_numpy(self.histories.items))
        json_files: dict[str, Any] = {"vocab/users.json": self.users.to_json(), "vocab/items.json": self.items.to_json()}
        if self.item_features is not None:
            json_files["item_features.json"] = self.item_features.to_json()
        config = {
            "estimator": self.name,
            "net": self.config.to_dict(),
            "dims": self.dims(),
            "train": self.train_config.to_dict(),
            "transforms": list(self.transforms),
        }
        merged = {**self.metrics, **(metrics or {})}
        return save_artifact(
            path, kind="retrieval", config=config, tensors=tensors, json_files=json_files, metrics=merged,
            info={"fit_seconds": self.fit_seconds},
        )

    @classmethod
    def from_artifact(cls: type[R], art: Artifact, device: str = "cpu", hooks: LoadHooks | None = None) -> R:
        cfg = art.config
        records = list(cfg.get("transforms", []))
        if records and hooks is None:
            raise ArtifactError(
                f"{art.path}: this model was compressed ({', '.join(str(r.get('transform')) for r in records)}); "
                "load it with turborec.load"
            )
        obj = cls(cls.config_class.from_dict(cfg["net"]), TrainConfig(**{**cfg.get("train", {}), "device": device}))
        obj.users = Vocabulary.from_json(art.json("vocab/users.json"))
        obj.items = Vocabulary.from_json(art.json("vocab/items.json"))
        if art.has("item_features.json"):
            obj.item_features = ItemFeatures.from_json(art.json("item_features.json"))
        tensors = art.torch_tensors()
        n_items = len(obj.items)
        # contents against declared sizes before anything is allocated from them (the net from dims, the
        # popularity counts from history.items): the checksums only say the files are the ones written
        sizes = {"n_users": len(obj.users), "n_items": n_items}
        if obj.item_features is not None:
            sizes["n_tokens"] = len(obj.item_features.vocab)
        dims = check_declared_dims(art.path, cfg.get("dims"), sizes)
        if "history.offsets" not in tensors or "history.items" not in tensors:
            raise ArtifactError(f"{art.path}: weights hold no training histories (history.offsets, history.items)")
        offsets = tensors.pop("history.offsets").numpy()
        items = tensors.pop("history.items").numpy()
        check_histories(art.file(WEIGHTS), offsets, items, len(obj.users), n_items)
        obj.histories = Histories(offsets.astype(np.int64), items.astype(np.int64), n_items)
        obj.net = obj._build_net(dims)
        if hooks is not None:
            hooks.prepare(obj.net, records)
        state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        check_state_shapes(art.file(WEIGHTS), unique_state(obj.net), state)
        load_unique_state(obj.net, state)
        if hooks is not None:
            hooks.finish(obj.net, records)
        obj.transforms = records
        obj.net.to(obj.device).eval()
        obj.metrics = art.metrics
        obj.fit_seconds = float(art.info.get("fit_seconds", 0.0))
        return obj


class LoadHooks(Protocol):
    """Replays compression transforms around weight loading (implemented by turborec.compress)."""

    def prepare(self, net: torch.nn.Module, records: list[dict[str, Any]]) -> None: ...

    def finish(self, net: torch.nn.Module, records: list[dict[str, Any]]) -> None: ...


def load(path: str | Path, device: str = "cpu", hooks: LoadHooks | None = None) -> Recommender:
    """Load any saved retrieval estimator (checksums verified first)."""
    art = load_artifact(path, kinds=("retrieval",))
    name = art.config.get("estimator")
    if not isinstance(name, str):
        raise ArtifactError(f"{path}: manifest names no estimator")
    cls = estimator_class(name)
    try:
        return cls.from_artifact(art, device=device, hooks=hooks)
    except TurborecError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:  # a manifest that does not fit
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ArtifactError(f"{path}: cannot rebuild the model ({type(exc).__name__}: {first})") from exc
