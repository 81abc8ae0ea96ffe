"""The synthetic click-log generator: chunking, determinism, and the returned true probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from turborec.data.ctr import SyntheticCTRConfig, iter_synthetic_ctr, synthetic_ctr
from turborec.data.ctr.synthetic import SyntheticClickModel
from turborec.errors import ConfigError
from turborec.metrics.ctr import auc


def test_chunks_concatenate_to_the_whole_and_repeat_with_the_seed() -> None:
    config = SyntheticCTRConfig(n_rows=25_000, chunk_rows=4_000, seed=3)
    whole = synthetic_ctr(config)
    parts = list(iter_synthetic_ctr(config))
    assert [len(p.data) for p in parts] == [4_000] * 6 + [1_000]
    assert np.array_equal(np.concatenate([p.data.sparse for p in parts]), whole.data.sparse)
    assert np.array_equal(np.concatenate([p.true_prob for p in parts]), whole.true_prob)
    again = synthetic_ctr(config)
    assert np.array_equal(again.data.label, whole.data.label)  # type: ignore[arg-type]
    other = synthetic_ctr(SyntheticCTRConfig(n_rows=25_000, chunk_rows=4_000, seed=4))
    assert not np.array_equal(other.data.sparse, whole.data.sparse)


def test_true_probabilities_come_from_the_click_model() -> None:
    config = SyntheticCTRConfig(n_rows=60_000, target_rate=0.1, seed=1)
    out = synthetic_ctr(config)
    data = out.data
    assert data.label is not None
    assert data.cardinalities == tuple(v + 1 for v in config.vocab_sizes)
    assert data.sparse.min() >= 1  # row 0 is the OOV row, never generated
    np.testing.assert_allclose(out.true_prob, SyntheticClickModel(config).prob(data.dense, data.sparse), rtol=1e-6)
    assert data.label.mean() == pytest.approx(0.1, abs=0.01)
    assert out.true_prob.mean() == pytest.approx(data.label.mean(), abs=0.01)
    # labels are Bernoulli(true_prob): the true probabilities rank them far above chance
    assert auc(data.label, out.true_prob) > 0.75


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="target_rate"):
        SyntheticCTRConfig(target_rate=1.5)
    with pytest.raises(ConfigError, match="vocab_sizes"):
        SyntheticCTRConfig(vocab_sizes=())
    with pytest.raises(ConfigError, match="n_rows"):
        SyntheticCTRConfig(n_rows=0)
