"""Vocabulary: JSON round trip, lookups (small and vectorized paths agree), sub-vocabularies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from turborec.data import Vocabulary
from turborec.errors import DataError, UnknownIdError


@pytest.mark.parametrize("ids", [(5, 3, 9, 100), ("u1", "u10", "x", "ü")])
def test_json_round_trip_keeps_ids_order_and_lookups(ids: tuple) -> None:
    vocab = Vocabulary(ids, name="user")
    back = Vocabulary.from_json(json.loads(json.dumps(vocab.to_json())))
    assert back == vocab
    assert back.name == "user"
    assert back.ids == ids
    assert [back.index(v) for v in ids] == list(range(len(ids)))


def test_from_json_rejects_malformed_and_duplicates() -> None:
    with pytest.raises(DataError):
        Vocabulary.from_json({"name": "x"})
    with pytest.raises(DataError, match="duplicated"):
        Vocabulary.from_json({"ids": [1, 2, 1]})


def test_vectorized_encode_matches_per_id_lookup() -> None:
    ids = tuple(range(0, 3000, 3))
    vocab = Vocabulary(ids, name="item")
    rng = np.random.default_rng(0)
    values = rng.choice(np.arange(0, 3000), size=1000)  # many unknown (not multiples of 3)
    fast = vocab.encode(values, unknown="minus1")
    slow = np.array([vocab.get(int(v)) for v in values])
    np.testing.assert_array_equal(fast, slow)
    # ids typed as strings still find integer ids on the vectorized path
    known = [str(v) for v in ids[:400]]
    np.testing.assert_array_equal(vocab.encode(known), np.arange(400))
    with pytest.raises(UnknownIdError, match="unknown item id 1"):
        vocab.encode([*ids[:300], 1])


def test_take_and_range() -> None:
    vocab = Vocabulary(("a", "b", "c", "d"))
    sub = vocab.take(np.array([3, 1]))
    assert sub.ids == ("d", "b")
    assert sub.index("b") == 1
    with pytest.raises(DataError):
        vocab.take([1, 1])
    r = Vocabulary.range(5, name="user")
    assert r.index(4) == 4 and "5" not in r and r.index("3") == 3
    assert r == Vocabulary(tuple(range(5)))
