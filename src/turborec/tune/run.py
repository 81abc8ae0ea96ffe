"""``run_tune``: the whole search for one reference model and split, its artifact and its report."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from turborec._util.artifact import TUNED_MODEL_DIR
from turborec.data.splits import Split
from turborec.errors import ConfigError
from turborec.train.recommender import Recommender
from turborec.tune.artifact import save_tuned
from turborec.tune.report import write_report
from turborec.tune.results import TuneOptions, TuneResult
from turborec.tune.search import Budget, Log, Tuner
from turborec.tune.space import DEFAULT_BACKENDS, SearchSpace, default_space, smallest_model_nbytes

MODEL_DIR = TUNED_MODEL_DIR  # `turborec serve OUT` and every other command open OUT/model


def check_memory_cap(memory_mb: float | None, n_users: int, n_items: int, dims: Sequence[int],
                     use_user_id: bool = True) -> None:
    """ConfigError when ``memory_mb`` is below what any variant could weigh (before any work)."""
    if memory_mb is None or not dims:
        return
    smallest = smallest_model_nbytes(n_users, n_items, min(dims), use_user_id) / 1e6
    if memory_mb < smallest:
        raise ConfigError(
            f"--memory-mb {memory_mb:g} is below the smallest model this search can make: its embedding tables "
            f"alone take at least {smallest:.3f} MB ({n_items:,} items, {n_users:,} users at dim {min(dims)}, int4)"
        )


def fit_reference(split: Split, model: str = "two-tower", params: Mapping[str, str] | None = None, *,
                  max_seconds: float | None = None, seed: int = 2020, progress: bool = True) -> Recommender:
    """Train the reference (teacher) model on ``split.train`` with early stopping on ``split.valid``."""
    from turborec.train.options import make_estimator

    typed: dict[str, Any] = {"seed": seed, "progress": progress}
    if max_seconds is not None:
        typed["max_seconds"] = max_seconds
    est = make_estimator(model, dict(params or {}), **typed)
    return est.fit(split.train, split.valid)


def space_for(reference: Recommender, backends: Sequence[str] = DEFAULT_BACKENDS,
              student_dims: Sequence[int] | None = None) -> SearchSpace:
    dim = int(getattr(reference.config, "dim", 0) or reference.item_vectors().shape[1])
    n_items = len(reference.items or ())
    if not hasattr(type(reference), "aux_loss"):  # only estimators that take a distillation term get students
        student_dims = ()
    return default_space(n_items, dim, backends=backends, student_dims=student_dims)


def run_tune(
    reference: Recommender,
    split: Split,
    options: TuneOptions,
    out: str | Path,
    *,
    space: SearchSpace | None = None,
    budget: Budget | None = None,
    progress: bool = True,
    log: Log | None = None,
    plots: bool = True,
) -> TuneResult:
    """Search, save the chosen configuration under ``out/model`` (when one is feasible), write the report."""
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a directory")
    tuner = Tuner(reference, split, space or space_for(reference), options, budget=budget, progress=progress, log=log)
    result = tuner.run()
    skipped_budget = [r.key for r in result.records if r.reason.startswith("time budget")]
    if skipped_budget:
        result.notes.append(f"time budget: {len(skipped_budget)} candidate(s) not measured: {', '.join(skipped_budget)}")
    chosen = result.chosen
    if chosen is not None:
        if chosen.http is None:
            result.notes.append(f"the chosen configuration was not confirmed over HTTP (time budget): {chosen.key}")
        rec, index = tuner.built(chosen.candidate.model, chosen.candidate.knobs)
        tuned_for = {"slo_p99_ms": options.slo_p99_ms, "rate": options.rate, "objective": options.objective,
                     "ndcg@10_valid": chosen.accuracy, "p99_ms_in_process": chosen.stats.p99_ms if chosen.stats else None,
                     "p99_ms_http": chosen.http.p99_ms if chosen.http else None, "memory_mb": chosen.memory_mb,
                     "model_variant": chosen.candidate.model.to_dict(), "tuned_at": time.time()}
        path = save_tuned(out_dir / MODEL_DIR, rec, chosen.candidate.knobs, index=index, tuned_for=tuned_for)
        result.artifact = str(path)
    result = replace(result, elapsed_s=tuner.budget.elapsed)
    write_report(result, out_dir, plots=plots)
    return result


__all__ = ["MODEL_DIR", "check_memory_cap", "fit_reference", "run_tune", "space_for"]
