"""The staged search: measure cheap dimensions first, carry the best knobs forward, skip what cannot win.

Stages (see :mod:`turborec.tune.space`): micro-batching and admission on the reference model, then backends,
then indexes, each starting from the best knobs so far; then every model variant with those
knobs. Each candidate gets its optimistic bounds checked first (``objective.skip_reason``), then
is built, its accuracy computed offline (cheap), checked again with the exact accuracy and
memory, and only then replayed at the target rate (expensive). Finally the best feasible points
are confirmed over HTTP, best first, until one holds. The time budget is checked before every
build and measurement; what it cuts is recorded as skipped.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from turborec._util.progress import bar as progress_bar
from turborec.backends import Runner
from turborec.bench.replay import RequestMix, replay
from turborec.data.splits import Split
from turborec.retrieval import Index
from turborec.serving.accelerated import build_index, build_serving_model, user_tower_runner
from turborec.serving.net_model import tower_history_len
from turborec.serving.settings import ServeSettings
from turborec.train.recommender import Recommender
from turborec.tune.accuracy import EvalSet, served_ndcg
from turborec.tune.artifact import save_tuned
from turborec.tune.confirm import confirm_over_http
from turborec.tune.objective import Bounds, Constraints, Selection, better, select, skip_reason
from turborec.tune.pareto import ALL_OBJECTIVES, OperatingPoints
from turborec.tune.results import MEASURED, SKIPPED, UNSUPPORTED, Record, TuneOptions, TuneResult
from turborec.tune.space import Candidate, ModelVariant, SearchSpace, ServingKnobs, index_nbytes, no_faster_than
from turborec.tune.variants import build_variant, weights_mb

BUILD_COST_S = {"torch-eager": 0.0, "onnx-fp32": 5.0, "onnx-int8": 8.0, "torch-compile": 90.0}
Log = Callable[[str], None]


class Budget:
    def __init__(self, seconds: float, started: float | None = None) -> None:
        self.seconds = seconds
        self.started = time.perf_counter() if started is None else started

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def allows(self, cost_s: float, reserve_s: float = 0.0) -> bool:
        return self.elapsed + cost_s + reserve_s <= self.seconds


class Tuner:
    def __init__(self, reference: Recommender, split: Split, space: SearchSpace, options: TuneOptions, *,
                 budget: Budget | None = None, progress: bool = True, log: Log | None = None) -> None:
        self.reference = reference
        self.split = split
        self.space = space
        self.options = options
        self.budget = budget or Budget(options.budget_s)
        self.progress = progress
        self._log = log
        self.records: list[Record] = []
        self.front = OperatingPoints(ALL_OBJECTIVES)
        self.constraints = Constraints(options.slo_p99_ms, None, options.memory_mb)
        self._models: dict[str, Recommender] = {space.models[0].name: reference}
        self._students: dict[int, Recommender] = {}
        self._variants = {v.name: v for v in space.models}
        self._runners: dict[tuple[str, str], Runner | None] = {}
        self._indexes: dict[tuple[str, str], Index | None] = {}
        self._accuracy: dict[tuple[str, str, str], float] = {}
        self._bar: Any = None
        self.eval_set = EvalSet.from_interactions(reference, split.valid)
        self.mix = RequestMix.sample(reference, split.valid, options.n_requests, seed=options.seed)
        self._measure_cost = options.warmup_s + options.measure_s + 2.0

    # ------------------------------------------------------------------ driver
    def run(self) -> TuneResult:
        opts = self.options
        base = self.space.baseline
        ref_model = self.space.models[0]
        self.reference_accuracy = self._served_accuracy(ref_model, base)
        floor = opts.min_accuracy.resolve(self.reference_accuracy) if opts.min_accuracy is not None else None
        self.constraints = Constraints(opts.slo_p99_ms, floor, opts.memory_mb)
        self.log(f"reference model: NDCG@10 {self.reference_accuracy:.4f} on validation"
                 + (f"; accuracy floor {floor:.4f} ({opts.min_accuracy})" if floor is not None else ""))
        self._bar = progress_bar(self.progress, total=self.space.size(), desc="tune", leave=False, unit="point")
        try:
            knobs = base
            for b, w, e in self.space.batching:
                self.consider(Candidate("batching", ref_model, knobs.with_(max_batch=b, max_wait_ms=w, executor=e)))
            knobs = self.best_knobs(knobs)
            for shed_at in self.space.admission[1:]:
                self.consider(Candidate("admission", ref_model, knobs.with_(shed_at=shed_at)))
            knobs = self.best_knobs(knobs)
            for backend in self.space.backends[1:]:
                self.consider(Candidate("backend", ref_model, knobs.with_(backend=backend)))
            knobs = self.best_knobs(knobs)
            for spec in self.space.indexes[1:]:
                self.consider(Candidate("index", ref_model, knobs.with_(index=spec)))
            knobs = self.best_knobs(knobs)
            for variant in self.space.models[1:]:
                record = self.consider(Candidate("model", variant, knobs))
                if record.status == UNSUPPORTED and knobs.backend != "torch-eager":  # e.g. int8 layers ONNX lacks
                    self.consider(Candidate("model", variant, knobs.with_(backend="torch-eager")))
        finally:
            self._bar.close()
        self.confirm()
        return TuneResult(opts, self.constraints, self.reference_accuracy, self.records, self.selection(),
                          self.budget.elapsed)

    def log(self, line: str) -> None:
        if self._log is not None:
            self._log(line)
        elif self.progress:
            from tqdm.auto import tqdm

            tqdm.write(line)

    # --------------------------------------------------------------- candidates
    def consider(self, cand: Candidate) -> Record:
        if self._bar is not None:
            self._bar.set_description(f"tune [{cand.stage}]")
        start = time.perf_counter()
        record = self._consider(cand)
        record.seconds = time.perf_counter() - start
        self.records.append(record)
        if self._bar is not None:
            if self._bar.n >= self._bar.total:  # a fallback point (e.g. eager after ONNX refused) was added
                self._bar.total = self._bar.n + 1
            self._bar.update(1)
        if record.status == MEASURED and record.stats is not None:
            point = record.point()
            assert point is not None
            on_front = self.front.add(point)
            verdict = "ok  " if self.constraints.feasible(point) else "MISS"
            lost = f", {point.failed_share:.0%} shed/lost" if point.failed_share else ""
            self.log(f"  {verdict} {cand.key}: NDCG@10 {record.accuracy:.4f}, p99 {_ms(record.stats.p99_ms)} "
                     f"(p50 {_ms(record.stats.p50_ms)}{lost}), {record.memory_mb:.2f} MB{' [front]' if on_front else ''}")
        else:
            self.log(f"  {record.status} {cand.key}: {record.reason}")
        return record

    def _consider(self, cand: Candidate) -> Record:
        if any(r.key == cand.key for r in self.records):
            return Record(cand, SKIPPED, "same configuration as an earlier point")
        reason = skip_reason(self.bounds(cand), self.constraints, self.incumbent(), None, self.options.objective,
                             self.options.tie)
        if reason is not None:
            return Record(cand, SKIPPED, reason)
        build_cost = BUILD_COST_S.get(cand.knobs.backend, 10.0)
        if cand.model.name not in self._models:
            build_cost += self.options.student_seconds + 10.0 if cand.model.needs_training else 3.0
        if not self.budget.allows(build_cost + self._measure_cost, self.reserve()):
            return Record(cand, SKIPPED, f"time budget (needs ~{build_cost + self._measure_cost:.0f} s)")
        try:
            accuracy = self._served_accuracy(cand.model, cand.knobs)
        except Exception as exc:  # a variant / backend / index that cannot be built must not end the search
            return Record(cand, UNSUPPORTED, _first_line(exc))
        rec = self._models[cand.model.name]
        dim = rec.item_vectors().shape[1]
        memory = weights_mb(rec) + index_nbytes(cand.knobs.index, len(rec.items or ()), dim) / 1e6
        exact = replace(self.bounds(cand), accuracy_max=accuracy, memory_min_mb=memory, accuracy_from="")
        reason = skip_reason(exact, self.constraints, self.incumbent(), self.front, self.options.objective,
                             self.options.tie)
        if reason is not None:
            return Record(cand, SKIPPED, reason, accuracy, memory)
        if not self.budget.allows(self._measure_cost, self.reserve()):
            return Record(cand, SKIPPED, "time budget (replay)", accuracy, memory)
        model = self._serving_model(cand)
        stats = replay(model, self.settings(cand.knobs), self.mix, self.options.rate, seconds=self.options.measure_s,
                       warmup_s=self.options.warmup_s, seed=self.options.seed, windows=self.options.windows)
        return Record(cand, MEASURED, "", accuracy, memory, stats)

    def bounds(self, cand: Candidate) -> Bounds:
        """Optimistic bounds from what is known: the accuracy computed or bounded by the parent variant's,
        the p99 of a measured point this one is assumed no faster than."""
        key = (cand.model.name, cand.knobs.backend, cand.knobs.index)
        acc, acc_from = self._accuracy.get(key, math.inf), ""
        parent = cand.model.parent
        while math.isinf(acc) and parent is not None:  # walk up: int4 <= int8 <= fp16 <= fp32
            same_knobs = self._accuracy.get((parent, cand.knobs.backend, cand.knobs.index))
            known = [a for (m, _, _), a in self._accuracy.items() if m == parent]
            if same_knobs is not None or known:
                acc = same_knobs if same_knobs is not None else max(known)
                acc_from = f"no more accurate than {parent}"
            parent = self._variants[parent].parent if parent in self._variants else None
        p99, p99_from = 0.0, ""
        for r in self.records:
            if r.status != MEASURED or r.stats is None:
                continue
            same = r.candidate.model == cand.model and r.candidate.knobs.with_(index=cand.knobs.index) == cand.knobs
            if same and no_faster_than(cand.knobs.index, r.candidate.knobs.index) and r.p99_ms > p99:
                p99, p99_from = r.p99_ms, f"no faster than {r.candidate.knobs.index}"
        return Bounds(acc, p99, 0.0, acc_from, p99_from)

    def incumbent(self) -> Any:
        return select([p for r in self.records if (p := r.point()) is not None], self.constraints,
                      self.options.objective, n_closest=0).chosen

    def best_knobs(self, fallback: ServingKnobs) -> ServingKnobs:
        """The knobs to carry forward: the lowest p99 among feasible points within the tie band of the
        best feasible accuracy; with none feasible, the lowest p99 of all."""
        measured = [r for r in self.records if r.status == MEASURED and r.candidate.model.is_reference]
        if not measured:
            return fallback
        feasible = [r for r in measured if (p := r.point()) is not None and self.constraints.feasible(p)]
        if feasible:
            top = max(r.accuracy or 0.0 for r in feasible)
            pool = [r for r in feasible if (r.accuracy or 0.0) >= top * (1 - self.options.tie)]
        else:
            pool = measured
        return min(pool, key=lambda r: _latency_rank(r)).candidate.knobs

    def confirm_cost(self, knobs: ServingKnobs) -> float:
        """One HTTP confirmation: a server process started (its backend built again), warm-up, the windows."""
        return BUILD_COST_S.get(knobs.backend, 10.0) + 8.0 + self.options.warmup_s + self.options.confirm_s + 3.0

    def reserve(self) -> float:
        """Time kept for the HTTP confirmations (at eager cost; a compiled backend pays its own) and the results."""
        return self.options.confirm_top * self.confirm_cost(ServingKnobs()) + 10.0

    # ------------------------------------------------------------------ confirm
    def confirm(self) -> None:
        """Confirm in-process-feasible points over HTTP, best first, until one holds (at most ``confirm_top``
        tries, each within the time budget)."""
        for _ in range(self.options.confirm_top):
            pending = [(p, r) for r in self.records
                       if r.http is None and (p := r.point()) is not None and self.constraints.feasible(p)]
            if not pending:
                return
            best, record = pending[0]
            for p, r in pending[1:]:
                if better(p, best, self.options.objective):
                    best, record = p, r
            cost = self.confirm_cost(record.candidate.knobs)
            if not self.budget.allows(cost):
                record.reason = "not confirmed over HTTP: time budget"
                self.log(f"  not confirmed over HTTP (time budget, ~{cost:.0f} s): {record.key}")
                return
            rec, index = self.built(record.candidate.model, record.candidate.knobs)
            with tempfile.TemporaryDirectory(prefix="turborec-tune-") as tmp:
                path = save_tuned(Path(tmp) / "candidate", rec, record.candidate.knobs, index=index,
                                  tuned_for={"slo_p99_ms": self.options.slo_p99_ms, "rate": self.options.rate})
                record.http = confirm_over_http(path, self.settings(record.candidate.knobs), self.mix,
                                                self.options.rate, seconds=self.options.confirm_s,
                                                seed=self.options.seed + 1, windows=self.options.windows)
            held = record.http.p99_ms <= self.constraints.slo_p99_ms
            self.log(f"  HTTP {'holds' if held else 'FAILS'} {record.key}: p99 {_ms(record.http.p99_ms)} "
                     f"(p50 {_ms(record.http.p50_ms)}, {record.http.failed} failed of {record.http.sent})")
            if held:
                return

    def selection(self) -> Selection:
        """The choice among points confirmed over HTTP (every measured point when confirmation is off);
        feasibility and the closest misses over every measured point."""
        points = [p for r in self.records if (p := r.point()) is not None]
        overall = select(points, self.constraints, self.options.objective)
        if self.options.confirm_top == 0:
            return overall
        confirmed = [p for r in self.records if r.http is not None and (p := r.point()) is not None]
        chosen = select(confirmed, self.constraints, self.options.objective, n_closest=0).chosen
        if chosen is not None:
            return Selection(chosen, overall.feasible, overall.closest)
        # nothing held over HTTP: the closest are the points feasible in-process (unconfirmed or failed over HTTP)
        # first, then the rest by how far they miss
        c = self.constraints
        ranked = sorted(points, key=lambda p: (c.shortfall(p), -p.accuracy, p.key))
        closest = tuple((p, tuple(c.violations(p))) for p in ranked[:3])
        return Selection(None, overall.feasible, closest)

    # ------------------------------------------------------------------ building
    def settings(self, knobs: ServingKnobs) -> ServeSettings:
        return ServeSettings(slo_p99_ms=self.options.slo_p99_ms, max_batch=knobs.max_batch,
                             max_wait_ms=knobs.max_wait_ms, executor=knobs.executor, shed_at=knobs.shed_at,
                             adaptive_tiers=False)

    def model_for(self, variant: ModelVariant) -> Recommender:
        if variant.name not in self._models:
            self._models[variant.name] = build_variant(self.reference, variant, self.split, students=self._students,
                                                       train_seconds=self.options.student_seconds)
        return self._models[variant.name]

    def parts(self, variant: ModelVariant, knobs: ServingKnobs) -> tuple[Recommender, Runner | None, Index | None]:
        rec = self.model_for(variant)
        rkey, ikey = (variant.name, knobs.backend), (variant.name, knobs.index)
        if rkey not in self._runners:
            self._runners[rkey] = user_tower_runner(rec, knobs.backend, tower_history_len(rec.servable()))
        if ikey not in self._indexes:
            self._indexes[ikey] = build_index(knobs.index, rec.item_vectors())
        return rec, self._runners[rkey], self._indexes[ikey]

    def _served_accuracy(self, variant: ModelVariant, knobs: ServingKnobs) -> float:
        key = (variant.name, knobs.backend, knobs.index)
        if key not in self._accuracy:
            rec, runner, index = self.parts(variant, knobs)
            self._accuracy[key] = served_ndcg(rec, self.eval_set, runner=runner, index=index)
        return self._accuracy[key]

    def _serving_model(self, cand: Candidate) -> Any:
        rec, runner, index = self.parts(cand.model, cand.knobs)
        return build_serving_model(rec, cand.knobs, f"tune-{cand.model.name}", index=index, runner=runner)

    def built(self, variant: ModelVariant, knobs: ServingKnobs) -> tuple[Recommender, Index | None]:
        rec, _, index = self.parts(variant, knobs)
        return rec, index


def _latency_rank(r: Record) -> tuple[float, float, float, float]:
    """Lower is faster: p99, then (when p99 is lost to shedding) the share lost and the median."""
    latency = r.http if r.http is not None else r.stats
    if latency is None:
        return (math.inf, 1.0, math.inf, 0.0)
    return (latency.p99_ms, latency.failed / max(latency.sent, 1), latency.p50_ms, -(r.accuracy or 0.0))


def _ms(value: float) -> str:
    return "inf (shed/lost)" if math.isinf(value) else f"{value:.2f} ms"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = (text[0] if text else "").split("  [Caused by")[0]
    line = f"{type(exc).__name__}: {first}"
    if len(line) <= 200:
        return line
    cut = line[:200].rsplit(" ", 1)[0]  # at a word boundary, and say it was cut
    return cut + " ..."


__all__ = ["BUILD_COST_S", "Budget", "Tuner"]
