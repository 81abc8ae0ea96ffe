"""Evaluating a saved ranker on labelled rows: the split it was trained with, or a file you bring,
never silently on its own training rows.

With ``use_split`` the rows must be the file the ranker was trained on (same row count): the
split saved in the artifact (seed, ratios) is re-created and its test part scored. In every
case the evaluated rows are fingerprinted and compared with the training rows' fingerprints
kept in the artifact: more than ``OVERLAP_REFUSE`` of them shared is refused (the metrics would
measure memorisation), a few shared (duplicated rows in the data) is a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from turborec.data.ctr import RawCTR, row_fingerprints, shuffle_split
from turborec.errors import ConfigError, DataError
from turborec.metrics.ctr import auc, calibration, logloss
from turborec.train.ctr import LoadedRanker

OVERLAP_REFUSE = 0.01


@dataclass
class RankerEvaluation:
    metrics: dict[str, Any]
    source: str
    notes: list[str] = field(default_factory=list)


def split_test_rows(ranker: LoadedRanker, raw: RawCTR) -> RawCTR:
    """The test part of the split ``ranker`` was trained with, re-created from ``raw`` (its training file)."""
    split = ranker.split
    if not split:
        raise ConfigError(f"{ranker.path} records no training split (written by an older turborec): "
                          "evaluate it on held-out rows with --test FILE")  # fmt: skip
    if int(split["rows"]) != len(raw):
        raise ConfigError(
            f"{raw.source} has {len(raw):,} rows but the model was trained on a file of {int(split['rows']):,} "
            "rows: it is not the training file, so the saved split cannot be re-created; use --test FILE"
        )
    return shuffle_split(raw, tuple(split["ratios"]), seed=int(split["seed"]))[-1]


def evaluate_rows(ranker: LoadedRanker, raw: RawCTR, *, use_split: bool, allow_overlap: bool = False) -> RankerEvaluation:
    """AUC, logloss and calibration of ``ranker`` on ``raw`` (or its saved split's test part)."""
    if raw.label is None:
        raise DataError("rows have no labels: cannot evaluate", source=raw.source)
    notes: list[str] = []
    source = raw.source
    if use_split:
        raw = split_test_rows(ranker, raw)
        source = f"{source} (test part of the saved split, seed {ranker.split['seed'] if ranker.split else '?'})"
    shared = ranker.overlap(row_fingerprints(raw))
    if ranker.train_rows is None:
        notes.append("the artifact keeps no fingerprints of its training rows: overlap with them is not checked")
    elif shared:
        share = shared / len(raw)
        message = (f"{shared:,} of {len(raw):,} evaluated rows ({share:.1%}) are rows the model was trained on, "
                   "so the metrics are optimistic")  # fmt: skip
        if share > OVERLAP_REFUSE and not allow_overlap:
            raise ConfigError(f"{message}: evaluate on held-out rows (--data FILE re-creates the saved split), "
                              "or pass --allow-overlap to score them anyway")  # fmt: skip
        notes.append(message)
    assert raw.label is not None
    p = ranker.predict(raw)
    metrics = {"rows": len(p), "auc": auc(raw.label, p), "logloss": logloss(raw.label, p),
               "calibration": calibration(raw.label, p), "training_rows_scored": shared}  # fmt: skip
    return RankerEvaluation(metrics, source, notes)


__all__ = ["OVERLAP_REFUSE", "RankerEvaluation", "evaluate_rows", "split_test_rows"]
