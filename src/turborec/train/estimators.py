"""The built-in retrieval estimators: popularity, MF-BPR, two-tower, EASE."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from turborec.data.interactions import Interactions
from turborec.errors import ConfigError, DataError, NotFittedError
from turborec.metrics.ranking import evaluate_ranking
from turborec.models.base import NetConfig
from turborec.models.ease import EASEConfig, EASENet
from turborec.models.mf import MFConfig, MFNet
from turborec.models.popularity import PopularityConfig, PopularityNet
from turborec.models.two_tower import TwoTowerConfig, TwoTowerNet
from turborec.train.history import Histories
from turborec.train.recommender import Recommender, register_estimator
from turborec.train.trainer import Parallel, TrainConfig, TrainHistory, fit_loop


def valid_scorer(rec: Recommender, valid: Interactions | None, k: int = 10):  # type: ignore[no-untyped-def]
    """Validation NDCG@k with training items masked (the early-stopping signal)."""
    if valid is None or len(valid) == 0:
        return None
    assert rec.histories is not None
    test = valid.to_csr()
    mask = rec.histories.to_csr()

    def score() -> float:
        return evaluate_ranking(rec.score_users, test, exclude=mask, ks=(k,))[f"ndcg@{k}"]

    return score


@register_estimator("popularity")
class PopularityRecommender(Recommender):
    config_class = PopularityConfig

    def _build_net(self, dims: Mapping[str, int]) -> PopularityNet:
        return PopularityNet(self.config, dims)  # type: ignore[arg-type]

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        assert isinstance(self.net, PopularityNet)
        self.net.set_counts(torch.from_numpy(train.item_popularity().astype(np.float32)))


@register_estimator("ease")
class EASERecommender(Recommender):
    config_class = EASEConfig
    config: EASEConfig

    def _build_net(self, dims: Mapping[str, int]) -> EASENet:
        return EASENet(self.config, dims)  # type: ignore[arg-type]

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        assert isinstance(self.net, EASENet) and self.histories is not None
        x = self.histories.to_csr()
        gram = (x.T @ x).toarray()
        scorer = valid_scorer(self, valid)
        grid = sorted({float(v) for v in self.config.l2_grid}) if scorer is not None else []
        if not grid:
            self.net.fit_closed_form(gram)
            return
        scores: dict[float, float] = {}
        for l2 in grid:  # one inverse each: ~0.3 s at 2k items, ~1 min at 20k
            self.net.fit_closed_form(gram, l2)
            scores[l2] = scorer()
        best = max(grid, key=lambda v: (scores[v], -v))
        self.config = replace(self.config, l2=best)
        self.net.config = self.config
        self.net.fit_closed_form(gram)
        self.metrics["l2_validation_ndcg@10"] = {f"{k:g}": v for k, v in scores.items()}

    def _similarity_vectors(self) -> np.ndarray:
        # item-item weights: column j says how much each item predicts j
        return self.item_vectors()


def _positive_pairs(train: Interactions) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.unique(train.user.astype(np.int64) * train.n_items + train.item.astype(np.int64))
    return pairs // train.n_items, pairs % train.n_items


@register_estimator("bpr")
class BPRRecommender(Recommender):
    """Matrix factorisation trained with Bayesian Personalised Ranking; negatives by dynamic negative sampling."""

    config_class = MFConfig
    config: MFConfig
    default_train = TrainConfig(epochs=200, batch_size=2048, lr=1e-3, weight_decay=0.0, patience=10)
    def _build_net(self, dims: Mapping[str, int]) -> MFNet:
        return MFNet(self.config, dims)  # type: ignore[arg-type]

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        net = self.net
        assert isinstance(net, MFNet)
        users, items = _positive_pairs(train)
        cfg = self.train_config
        gen = np.random.default_rng(cfg.seed)
        n_items = train.n_items
        pair_keys = users * n_items + items  # sorted: _positive_pairs is np.unique's order
        dev = self.device

        def batches(epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
            order = gen.permutation(len(users))
            for s in range(0, len(order), cfg.batch_size):
                sel = order[s : s + cfg.batch_size]
                neg = gen.integers(0, n_items, (len(sel), self.config.negatives, self.config.negative_candidates))
                # a candidate the user has in training is no negative (DNS would pick these first)
                keys = users[sel, None, None] * n_items + neg
                pos = np.minimum(np.searchsorted(pair_keys, keys), len(pair_keys) - 1)
                known = pair_keys[pos] == keys
                yield tuple(torch.from_numpy(a).to(dev) for a in (users[sel], items[sel], neg, known))

        def loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            u, i, cand, known = batch
            pu, qi = net.user_emb(u), net.item_emb(i)
            j = _hardest(net, pu, cand, known)
            qj = net.item_emb(j)
            diff = ((pu * qi).sum(-1) + net.bias(i)).unsqueeze(1) - ((pu.unsqueeze(1) * qj).sum(-1) + net.bias(j))
            reg = self.config.regularization * (pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum() / qj.shape[1]) / len(u)
            return -F.logsigmoid(diff).mean() + reg

        self.history = fit_loop(net, loss, batches, cfg, valid_scorer(self, valid), desc="bpr")


class _WeightAverage:
    """Exponential moving average of a net's parameters, swapped in while validating.

    fit_loop keeps the best *validated* state, so the average is what gets restored; the raw weights
    come back before the next epoch trains.
    """

    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay = decay
        self.params = list(net.parameters())
        self.shadow = [p.detach().clone() for p in self.params]
        self.raw: list[torch.Tensor] | None = None
        self.steps = 0

    @torch.no_grad()
    def update(self) -> None:
        # a shorter memory over the first steps, so a short fit is not an average with its initial weights
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        self.steps += 1
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - decay)

    @torch.no_grad()
    def swap_in(self) -> None:
        self.raw = [p.detach().clone() for p in self.params]
        for avg, p in zip(self.shadow, self.params, strict=True):
            p.copy_(avg)

    @torch.no_grad()
    def swap_out(self) -> None:
        if self.raw is not None:
            for raw, p in zip(self.raw, self.params, strict=True):
                p.copy_(raw)
            self.raw = None

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps (the raw weights too: they are swapped out while the average is validated)."""
        return {"steps": self.steps, "shadow": list(self.shadow), "raw": self.raw}

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = int(state["steps"])
        for avg, saved in zip(self.shadow, state["shadow"], strict=True):
            avg.copy_(saved)
        self.raw = None if state["raw"] is None else [t.clone() for t in state["raw"]]

    def wrap(self, score: Callable[[], float]) -> Callable[[], float]:
        def averaged() -> float:
            self.swap_in()
            return score()

        return averaged


@torch.no_grad()
def _hardest(net: MFNet, pu: torch.Tensor, cand: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """[B, n, c] candidate negatives -> [B, n]: the unobserved one the model scores highest (DNS).

    ``known`` [B, n, c] marks candidates that are the user's training items; they lose to any other.
    """
    if cand.shape[-1] == 1:
        return cand[..., 0]
    scores = torch.einsum("bd,bncd->bnc", pu, net.item_emb(cand)) + net.bias(cand)
    scores = scores.masked_fill(known, float("-inf"))
    return cand.gather(-1, scores.argmax(-1, keepdim=True)).squeeze(-1)


@dataclass(frozen=True)
class _TowerBatch:
    """This process's rows of a global batch (all of it in one process): their users, positive items and
    histories; ``in_batch`` holds the whole global batch's positives (the in-batch negatives), of which
    ``items`` are rows ``offset:offset + len(items)``."""

    users: torch.Tensor
    items: torch.Tensor
    history: torch.Tensor
    negatives: torch.Tensor
    in_batch: torch.Tensor
    offset: int = 0


@dataclass(frozen=True)
class _UserBatch:
    """Whole users: their visible history, the hidden (target) items, and every visible item they have.

    ``items`` (the distinct targets) and the empty ``negatives`` give an auxiliary loss (distillation)
    the fields a pair batch has.
    """

    users: torch.Tensor  # [B]
    history: torch.Tensor  # [B, L] visible items, most recent last, -1 padded
    target_rows: torch.Tensor  # [T] row in the batch of each hidden item
    target_items: torch.Tensor  # [T]
    seen_rows: torch.Tensor  # [S] every visible item (also those beyond the history window)
    seen_items: torch.Tensor  # [S]
    items: torch.Tensor
    negatives: torch.Tensor

    def rows(self, lo: int, hi: int) -> _UserBatch:
        """Users ``lo:hi`` of this batch (a process's share of a global batch), their targets re-indexed."""
        t = (self.target_rows >= lo) & (self.target_rows < hi)
        s = (self.seen_rows >= lo) & (self.seen_rows < hi)
        return _UserBatch(users=self.users[lo:hi], history=self.history[lo:hi], target_rows=self.target_rows[t] - lo,
                          target_items=self.target_items[t], seen_rows=self.seen_rows[s] - lo,
                          seen_items=self.seen_items[s], items=self.items, negatives=self.negatives)


def _unique_histories(histories: Histories) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, items) of each user's distinct items in time order (a repeated item at its last time)."""
    n_items = max(histories.n_items, 1)
    user = np.repeat(np.arange(histories.n_users, dtype=np.int64), histories.lengths())
    keys = user * n_items + histories.items
    # the last occurrence of each (user, item): first one in the reversed array
    _, first_rev = np.unique(keys[::-1], return_index=True)
    keep = np.sort(len(keys) - 1 - first_rev)
    offsets = np.zeros(histories.n_users + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(user[keep], minlength=histories.n_users))
    return offsets, histories.items[keep]


def check_teacher(student: Recommender, teacher: Recommender, train: Interactions) -> None:
    """NotFittedError / DataError unless ``teacher`` is fitted on ``train``'s users and items (its scores are
    read by index); records it in the student's metrics."""
    if teacher.net is None or teacher.histories is None:
        raise NotFittedError("the teacher is not fitted; fit or load it first")
    if teacher.users != train.users or teacher.items != train.items:
        raise DataError("the teacher was fitted on other users or items: fit it on the same split")
    student.metrics["teacher"] = {"model": teacher.name, "net": teacher.config.to_dict()}


def _last_items(row: np.ndarray, item: np.ndarray, n_rows: int, width: int | None) -> np.ndarray:
    """[n_rows, <= width] each row's last ``width`` items (None: all), oldest first, -1 padded; ``row`` is
    sorted (each row's items in order), vectorised."""
    n = np.bincount(row, minlength=n_rows)
    width = int(n.max(initial=0)) if width is None else width
    rank = np.arange(len(row)) - (np.cumsum(n) - n)[row]  # position among the row's items
    first = np.maximum(n - width, 0)[row]
    inside = rank >= first
    out = np.full((n_rows, max(int(min(width, n.max(initial=0))), 1)), -1, dtype=np.int64)
    out[row[inside], (rank - first)[inside]] = item[inside]
    return out


def _user_batch(
    users: np.ndarray, offsets: np.ndarray, items: np.ndarray, holdout: float, width: int,
    gen: np.random.Generator, dev: torch.device,
) -> _UserBatch:
    """Split each user's items at random into visible (input) and hidden (targets), vectorised."""
    lengths = offsets[users + 1] - offsets[users]
    row = np.repeat(np.arange(len(users)), lengths)
    start = np.cumsum(lengths) - lengths
    events = offsets[users][row] + np.arange(len(row)) - start[row]
    item = items[events]
    hidden = gen.random(len(row)) < holdout
    visible = ~hidden
    history = _last_items(row[visible], item[visible], len(users), width)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(dev)

    return _UserBatch(
        users=t(users), history=t(history), target_rows=t(row[hidden]), target_items=t(item[hidden]),
        seen_rows=t(row[visible]), seen_items=t(item[visible]), items=t(np.unique(item[hidden])),
        negatives=t(np.zeros(0)),
    )


def scaled_batch(config: TrainConfig, interactions: int) -> TrainConfig:
    """``config`` with a batch large enough that an epoch over ``interactions`` takes at most
    ``config.max_steps_per_epoch`` steps (``batch_size`` is the least a step holds).

    A per-user two-tower step costs about the same whatever it holds (the item tower over the whole
    catalog dominates; ~55-65 ms at 3,705 items, 4,096 to 32,768 interactions, one thread), so on a
    large data set more steps of the same size make each epoch dearer while each user is still seen
    once an epoch; larger steps keep an epoch's cost bounded (issue 16: 1M interactions).
    """
    cap = config.max_steps_per_epoch
    if cap <= 0 or interactions <= cap * config.batch_size:
        return config
    return replace(config, batch_size=-(-interactions // cap))


@torch.no_grad()
def _teacher_targets(teacher: Recommender, b: _UserBatch, temperature: float) -> torch.Tensor:
    """[B, n_items]: the teacher's softmax (scores / ``temperature``) over each user's non-visible items,
    the teacher reading the same visible items the student reads (all of them, or its own window)."""
    # seen_rows are in row order, each row's items oldest first
    visible = _last_items(b.seen_rows.cpu().numpy(), b.seen_items.cpu().numpy(), len(b.users), teacher.history_len)
    scores = torch.from_numpy(teacher.score_users(b.users.cpu().numpy(), visible)).float().to(b.users.device)
    scores = scores.index_put((b.seen_rows, b.seen_items), torch.tensor(float("-inf"), device=scores.device))
    return F.softmax(scores / temperature, dim=1)


def _teacher_term(teacher: Recommender, b: _UserBatch, log_p: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of the student's ``log_p`` [B, n_items] against the teacher's targets, each user
    weighted by its hidden items (as the hidden-item term weights it)."""
    targets = _teacher_targets(teacher, b, temperature)
    per_user = -(targets * log_p.clamp_min(-1e4)).sum(1)  # visible items: target 0, log_p -inf
    n_hidden = torch.bincount(b.target_rows, minlength=len(b.users)).to(per_user.dtype)
    return (per_user * n_hidden).sum() / n_hidden.sum().clamp_min(1.0)


@register_estimator("two-tower")
class TwoTowerRecommender(Recommender):
    """Two-tower retrieval. Default objective "users": per user, a random half of its items hidden from
    the history input and predicted with one softmax over the catalog (Mult-DAE style). "pairs" (and any
    catalog above ``full_softmax_below``): one example per (user, item) pair, with the
    full softmax on small catalogs, else in-batch negatives with log-Q correction plus uniformly sampled
    negatives (mixed negative sampling, Yang et al. 2020)."""

    config_class = TwoTowerConfig
    config: TwoTowerConfig
    # batch_size counts interactions per step for either objective (a "users" step holds whole users).
    # The training defaults follow the objective that trains: ``default_train`` for "users" (the default
    # objective), ``pairs_train`` for "pairs", also where "users" falls back to pairs (a catalog above
    # full_softmax_below). Options set by the caller apply on top of either.
    # max_steps_per_epoch: above 25 x 4,096 interactions a step grows instead (ml-latest-small's 52k keep 13
    # steps of 4,096; 1M interactions: 25 of ~32k, one epoch ~2.3 CPU s instead of ~10.5; docs/benchmarks.md)
    default_train = TrainConfig(epochs=300, batch_size=4096, lr=3e-3, weight_decay=0.0, patience=15,
                                max_steps_per_epoch=25)
    pairs_train = TrainConfig(epochs=60, batch_size=512, lr=2e-3, weight_decay=0.0, patience=5)
    # an extra training term f(batch) -> scalar added to the loss (e.g. distillation from a
    # teacher, set by turborec.compress); never saved
    aux_loss: Callable[[_TowerBatch | _UserBatch], torch.Tensor] | None = None
    # a fitted retrieval model whose scores are soft targets (objective "users"; teacher_weight and
    # teacher_temperature say how); never saved
    teacher: Recommender | None = None
    # how training is spread over processes (turborec.distributed sets a sharded one); never saved
    parallel: Parallel = Parallel()

    def __init__(self, config: NetConfig | None = None, train: TrainConfig | None = None, *,
                 teacher: Recommender | None = None, **overrides: Any):
        super().__init__(config, train, **overrides)
        if teacher is not None:
            self.teacher = teacher
        # the training options the caller chose (None: a whole TrainConfig, kept as given)
        train_fields = set(TrainConfig.__dataclass_fields__)
        self._chosen_train = None if train is not None else {k: v for k, v in overrides.items() if k in train_fields}
        chosen = self._chosen_train or {}
        if "batch_size" in chosen and "max_steps_per_epoch" not in chosen:  # a batch size asked for is kept
            self.train_config = replace(self.train_config, max_steps_per_epoch=0)
        if self.config.objective == "pairs":
            self._use_pairs_defaults()

    def _use_pairs_defaults(self) -> None:
        if self._chosen_train is not None:
            self.train_config = replace(self.pairs_train, **self._chosen_train)

    def _build_net(self, dims: Mapping[str, int]) -> TwoTowerNet:
        return TwoTowerNet(self.config, dims)  # type: ignore[arg-type]

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        assert isinstance(self.net, TwoTowerNet) and self.histories is not None
        par = self.parallel
        cfg = self.config
        # the per-user objective needs the full softmax (small catalogs); sharded, each process trains its users
        users = cfg.objective == "users" and train.n_items <= cfg.full_softmax_below
        if self.teacher is not None:
            self._check_teacher(train, users)
        if not users:
            self._use_pairs_defaults()
        net = par.prepare(self.net)  # the net itself, or a copy with sharded tables
        assert isinstance(net, TwoTowerNet)
        average = _WeightAverage(net, cfg.weight_average) if cfg.weight_average > 0 else None
        batches: Callable[[int], Iterator[Any]]
        objective: Callable[[Any], torch.Tensor]
        if users:
            batches, objective, extras = self._user_objective(net, train, average, par)
        else:
            batches, objective, extras = self._pair_objective(net, train, average, par)
        tcfg = self.train_config  # after the objective: the per-user one may have grown the batch
        aux = self.aux_loss
        loss = objective if aux is None else (lambda b: objective(b) + aux(b))
        scorer = valid_scorer(self, valid)
        if scorer is not None:
            scorer = par.evaluate(scorer)
        if average is not None and scorer is not None:
            scorer = average.wrap(scorer)
        self.history: TrainHistory = fit_loop(net, loss, batches, tcfg, scorer, optimizer=par.optimizer(net, tcfg),
                                              desc="two-tower", parallel=par, extras={**extras, "average": average})
        if average is not None and scorer is None:  # nothing validated: keep the average of the last steps
            average.swap_in()
        par.finish()

    def _check_teacher(self, train: Interactions, users: bool) -> None:
        teacher = self.teacher
        assert teacher is not None
        if not users:
            raise ConfigError(f"a teacher trains the two-tower's per-user objective (objective='users', catalogs up to "
                              f"full_softmax_below={self.config.full_softmax_below:,} items); this fit trains pairs")
        check_teacher(self, teacher, train)
        if self.parallel.world_size > 1:
            raise ConfigError("a teacher trains in one process (the sharded job takes none)")

    def _user_objective(
        self, net: TwoTowerNet, train: Interactions, average: _WeightAverage | None, par: Parallel
    ) -> tuple[Callable[[int], Iterator[_UserBatch]], Callable[[_UserBatch], torch.Tensor], dict[str, Any]]:
        """Per-user batches: hide a random ``holdout`` share of each user's items, predict them from the rest.

        A step holds whole users until it has ``batch_size`` interactions, so an epoch is one pass over the
        interactions (as with pairs) in n_interactions / batch_size steps, each one softmax over the catalog.
        """
        assert self.histories is not None
        offsets, items = _unique_histories(self.histories)
        lengths = np.diff(offsets)
        self.train_config = scaled_batch(self.train_config, int(lengths.sum()))
        cfg, tcfg = self.config, self.train_config
        active = np.flatnonzero(lengths > 0)
        width, dev = cfg.history_len, self.device
        gen = np.random.default_rng(tcfg.seed)

        def batches(epoch: int) -> Iterator[_UserBatch]:
            if average is not None:
                average.swap_out()
            order = gen.permutation(active)
            ends = np.cumsum(lengths[order])
            cuts = np.searchsorted(ends, np.arange(tcfg.batch_size, int(ends[-1]), tcfg.batch_size), side="left") + 1
            for sel in np.split(order, np.unique(cuts[cuts < len(order)])):
                batch = _user_batch(sel, offsets, items, cfg.holdout, width, gen, dev)
                # every process draws the global batch (same RNG calls) and trains on its users of it
                lo, hi = par.rows(len(sel))
                if (lo, hi) == (0, len(sel)):
                    yield batch
                elif hi > lo:
                    yield batch.rows(lo, hi)

        teacher = self.teacher
        weight = cfg.teacher_weight

        def loss(b: _UserBatch) -> torch.Tensor:
            if average is not None:
                average.update()
            logits = net.user_vectors(b.users, b.history) @ net.item_vectors().T
            # the items left visible are positives too: not negatives for the hidden ones
            logits = logits.index_put((b.seen_rows, b.seen_items), torch.tensor(float("-inf"), device=dev))
            log_p = F.log_softmax(logits, dim=1)
            hidden = -log_p[b.target_rows, b.target_items].mean()
            if teacher is None:
                return hidden
            return (1.0 - weight) * hidden + weight * _teacher_term(teacher, b, log_p, cfg.teacher_temperature)

        return batches, loss, {"data_rng": gen}

    def _pair_objective(
        self, net: TwoTowerNet, train: Interactions, average: _WeightAverage | None, par: Parallel
    ) -> tuple[Callable[[int], Iterator[_TowerBatch]], Callable[[_TowerBatch], torch.Tensor], dict[str, Any]]:
        """One example per (user, item) pair, the item left out of its own history input."""
        assert self.histories is not None
        cfg, tcfg = self.config, self.train_config
        users, items = _positive_pairs(train)
        n_items = train.n_items
        dev = self.device
        gen = np.random.default_rng(tcfg.seed)
        hist_all = torch.from_numpy(self.histories.padded(np.arange(train.n_users), cfg.history_len)).to(dev)
        pop = np.bincount(items, minlength=n_items).astype(np.float64) + 1.0
        log_q_batch = torch.from_numpy(np.log(pop / pop.sum())).float().to(dev)
        log_q_uniform = float(np.log(1.0 / n_items))
        users_t = torch.from_numpy(users).to(dev)
        items_t = torch.from_numpy(items).to(dev)
        hist_gen = torch.Generator(device=dev).manual_seed(tcfg.seed)

        def batches(epoch: int) -> Iterator[_TowerBatch]:
            if average is not None:
                average.swap_out()
            order = torch.from_numpy(gen.permutation(len(users))).to(dev)
            for s in range(0, len(order), tcfg.batch_size):
                sel = order[s : s + tcfg.batch_size]
                u, i = users_t[sel], items_t[sel]
                h = hist_all[u].clone()
                # never let the target leak into its own input; drop some history for robustness
                drop = torch.rand(h.shape, generator=hist_gen, device=dev) < cfg.history_dropout
                h[(h == i.unsqueeze(1)) | drop] = -1
                neg = torch.from_numpy(gen.integers(0, n_items, cfg.sampled_negatives)).to(dev)
                # every process draws the global batch (same RNG calls) and trains on its rows of it
                lo, hi = par.rows(len(sel))
                if hi > lo:
                    yield _TowerBatch(u[lo:hi], i[lo:hi], h[lo:hi], neg, i, lo)

        full = n_items <= cfg.full_softmax_below
        seen = self.histories.to_csr() if full and cfg.mask_positives else None

        def loss(b: _TowerBatch) -> torch.Tensor:
            if average is not None:
                average.update()
            uv = net.user_vectors(b.users, b.history)
            bsz = len(b.items)
            if full:  # exact softmax over the whole catalog
                logits = uv @ net.item_vectors().T
                if seen is not None:  # the user's other positives are not negatives
                    rows = seen[b.users.cpu().numpy()].toarray() > 0
                    other = torch.from_numpy(rows).to(dev)
                    other[torch.arange(bsz, device=dev), b.items] = False
                    logits = logits.masked_fill(other, float("-inf"))
                return F.cross_entropy(logits, b.items)
            cand = torch.cat([b.in_batch, b.negatives])
            logits = uv @ net.item_vectors(cand).T  # temperature and item bias are inside the vectors
            correction = torch.cat([
                log_q_batch[b.in_batch] + np.log(len(b.in_batch)),
                torch.full_like(b.negatives, log_q_uniform, dtype=torch.float) + np.log(len(b.negatives)),
            ])
            logits = logits - correction.unsqueeze(0)
            # a candidate equal to the row's positive (other than itself) is not a negative
            own = b.offset + torch.arange(bsz, device=dev)
            same = b.items.unsqueeze(1) == cand.unsqueeze(0)
            same[torch.arange(bsz, device=dev), own] = False
            logits = logits.masked_fill(same, float("-inf"))
            return F.cross_entropy(logits, own)

        return batches, loss, {"data_rng": gen, "history_rng": hist_gen}
