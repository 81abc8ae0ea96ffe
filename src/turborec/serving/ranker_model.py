"""A CTR ranker behind the service's narrow model interface: rows of raw feature values in,
click probabilities out (``POST /v1/score``).

It rides the same micro-batching, admission control and SLO ladder as recommendations. Its
ladder: ``full`` (the net), ``cheap-ranker`` (for wide-and-deep nets, their first-order term
alone: the logistic regression they were warm-started from, a gather and a sum), ``popular``
(no model call: the click rate the model gives a row of unseen values, its prior).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from turborec.data.ctr import RawCTR
from turborec.errors import ConfigError, DataError
from turborec.serving.model import BatchOutput, Query, Ranked
from turborec.serving.tiers import Tier
from turborec.train.ctr import LoadedRanker

Row = Mapping[str, Any]


class RankerServingModel:
    """Scores batches of rows; ``recommend_batch`` refuses (a ranker has no catalog to recommend from)."""

    def __init__(self, ranker: LoadedRanker, version: str) -> None:
        if ranker.encoder is None:
            raise ConfigError(f"{ranker.path}: the ranker has no encoder, so it cannot score raw rows")
        self.ranker = ranker
        self.encoder = ranker.encoder
        self._version = version
        self._dense = {name: i for i, name in enumerate(self.encoder.dense_names)}
        self._sparse = {name: j for j, name in enumerate(self.encoder.sparse_names)}
        wide = ranker.model.first_order()
        self._wide = wide
        self._tiers = (Tier.FULL, Tier.CHEAP_RANKER, Tier.POPULAR) if wide is not None else (Tier.FULL, Tier.POPULAR)
        self.prior = float(self._score(self.to_raw([{}]), Tier.FULL)[0])

    # ------------------------------------------------------------ interface
    @property
    def version(self) -> str:
        return self._version

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return self._tiers

    @property
    def features(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(dense, categorical) feature names a row may carry."""
        return self.encoder.dense_names, self.encoder.sparse_names

    def recommend_batch(self, queries: Sequence[Query], tier: Tier) -> BatchOutput:
        raise ConfigError("this model is a CTR ranker: it scores rows (POST /v1/score), it does not recommend")

    def similar(self, item: str, k: int) -> Ranked:
        raise ConfigError("this model is a CTR ranker: it has no items to compare")

    def knows_item(self, item: str) -> bool:
        return False

    def probe_rows(self, n: int) -> list[RawCTR]:
        """``n`` one-row requests of unseen values, for warm-up and reload smoke tests."""
        return [self.to_raw([{}]) for _ in range(n)]

    # --------------------------------------------------------------- scoring
    def to_raw(self, rows: Sequence[Row]) -> RawCTR:
        """Rows of ``{feature: value}`` -> raw columns; an absent feature is missing (NaN / "")."""
        dense = np.full((len(rows), len(self._dense)), np.nan)
        cats = np.full((len(rows), len(self._sparse)), "", dtype=object)
        for r, row in enumerate(rows):
            for name, value in row.items():
                if name in self._sparse:
                    cats[r, self._sparse[name]] = "" if value is None else str(value)
                elif name in self._dense:
                    if value is None:
                        continue
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                        raise DataError(f"row {r}: dense feature {name!r} needs a finite number, got {value!r}")
                    dense[r, self._dense[name]] = float(value)
                else:
                    raise DataError(f"row {r}: unknown feature {name!r}; the model's features are "
                                    f"{', '.join([*self._dense, *self._sparse])}")  # fmt: skip
        return RawCTR(dense, cats, None, self.encoder.dense_names, self.encoder.sparse_names, "request")

    def _score(self, raw: RawCTR, tier: Tier) -> np.ndarray:
        if tier is Tier.POPULAR:
            return np.full(len(raw), self.prior, dtype=np.float32)
        data = self.encoder.transform(raw)
        if tier is Tier.CHEAP_RANKER and self._wide is not None:
            model = self.ranker.model
            with torch.inference_mode():
                dense, sparse = torch.from_numpy(data.dense), torch.from_numpy(data.sparse)
                logit = self._wide(dense, sparse) + model.output_layer().bias.reshape(())
                return torch.sigmoid(model.calibrate(logit)).numpy().astype(np.float32)
        return self.ranker.predict(data)

    def score_batch(self, requests: Sequence[RawCTR], tier: Tier) -> list[np.ndarray]:
        """One probability array per request (rows from :meth:`to_raw`), all rows scored in one call."""
        if not requests:
            return []
        sizes = [len(r) for r in requests]
        probs = self._score(requests[0] if len(requests) == 1 else RawCTR.concat(requests), tier)
        return np.split(probs, np.cumsum(sizes)[:-1])


__all__ = ["RankerServingModel"]
