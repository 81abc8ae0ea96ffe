"""The built-in retrieval estimators: popularity, MF-BPR, two-tower, EASE."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from turborec.data.interactions import Interactions
from turborec.metrics.ranking import evaluate_ranking
from turborec.models.ease import EASEConfig, EASENet
from turborec.models.mf import MFConfig, MFNet
from turborec.models.popularity import PopularityConfig, PopularityNet
from turborec.models.two_tower import TwoTowerConfig, TwoTowerNet
from turborec.train.recommender import Recommender, register_estimator
from turborec.train.trainer import Parallel, TrainConfig, TrainHistory, fit_loop


def _valid_scorer(rec: Recommender, valid: Interactions | None, k: int = 10):  # type: ignore[no-untyped-def]
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

    def _build_net(self, dims: Mapping[str, int]) -> EASENet:
        return EASENet(self.config, dims)  # type: ignore[arg-type]

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        assert isinstance(self.net, EASENet) and self.histories is not None
        x = self.histories.to_csr()
        gram = (x.T @ x).toarray()
        self.net.fit_closed_form(gram)

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

        self.history = fit_loop(net, loss, batches, cfg, _valid_scorer(self, valid), desc="bpr")


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
        for avg, p in zip(self.shadow, self.params, strict=True):
            avg.lerp_(p.detach(), 1.0 - decay)

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


@register_estimator("two-tower")
class TwoTowerRecommender(Recommender):
    """Two-tower retrieval trained with sampled softmax: in-batch negatives with log-Q correction
    plus uniformly sampled negatives (mixed negative sampling, Yang et al. 2020)."""

    config_class = TwoTowerConfig
    config: TwoTowerConfig
    default_train = TrainConfig(epochs=60, batch_size=512, lr=2e-3, weight_decay=0.0, patience=5)
    # an extra training term f(batch) -> scalar added to the loss (e.g. distillation from a
    # teacher, set by turborec.compress); never saved
    aux_loss: Callable[[_TowerBatch], torch.Tensor] | None = None
    # how training is spread over processes (turborec.distributed sets a sharded one); never saved
    parallel: Parallel = Parallel()

    def _build_net(self, dims: Mapping[str, int]) -> TwoTowerNet:
        return TwoTowerNet(self.config, dims)  # type: ignore[arg-type]

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        assert isinstance(self.net, TwoTowerNet) and self.histories is not None
        par = self.parallel
        net = par.prepare(self.net)  # the net itself, or a copy with sharded tables
        assert isinstance(net, TwoTowerNet)
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

        average = _WeightAverage(net, cfg.weight_average) if cfg.weight_average > 0 else None

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
        all_items = torch.arange(n_items, device=dev)
        seen = self.histories.to_csr() if full and cfg.mask_positives else None

        def loss(b: _TowerBatch) -> torch.Tensor:
            if average is not None:
                average.update()
            uv = net.user_vectors(b.users, b.history)
            bsz = len(b.items)
            if full:  # exact softmax over the whole catalog
                logits = uv @ net.item_vectors(all_items).T
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

        aux = self.aux_loss
        objective = loss if aux is None else (lambda b: loss(b) + aux(b))
        scorer = _valid_scorer(self, valid)
        if scorer is not None:
            scorer = par.evaluate(scorer)
        if average is not None and scorer is not None:
            scorer = average.wrap(scorer)
        extras = {"data_rng": gen, "history_rng": hist_gen, "average": average}
        self.history: TrainHistory = fit_loop(net, objective, batches, tcfg, scorer, optimizer=par.optimizer(net, tcfg),
                                              desc="two-tower", parallel=par, extras=extras)
        if average is not None and scorer is None:  # nothing validated: keep the average of the last steps
            average.swap_in()
        par.finish()
