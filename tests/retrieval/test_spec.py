"""Spec strings: parsing, canonical form, round trip, runtime knobs apart from structure."""

from __future__ import annotations

import pytest

from turborec.errors import ConfigError
from turborec.retrieval import make_index, parse_spec

CANONICAL = [
    "Exact",
    "Exact|item_chunk=4096,query_batch=64",
    "Flat",
    "HNSW32",
    "HNSW32,SQ8",
    "HNSW32|efSearch=128",
    "IVF1024,Flat",
    "IVF1024,Flat|nprobe=32",
    "IVF1024,PQ16",
    "IVF1024,PQ16x4|nprobe=8",
    "IVF256,SQ8",
    "IVF256,SQ8,RFlat|k_factor=2",
    "IVF2048,PQ32x4fs,RFlat|k_factor=8,nprobe=16",
]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_specs_round_trip(text: str) -> None:
    spec = parse_spec(text)
    assert str(spec) == text
    assert parse_spec(str(spec)) == spec


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("HNSW32,Flat", "HNSW32"),
        (" IVF64, PQ8x8 ", "IVF64,PQ8"),
        ("HNSW16|efSearch=40", "HNSW16|efSearch=40"),
        ("Exact|query_batch=8,item_chunk=100", "Exact|item_chunk=100,query_batch=8"),
    ],
)
def test_equivalent_spellings_canonicalise(text: str, canonical: str) -> None:
    assert str(parse_spec(text)) == canonical


def test_structure_and_params_are_apart() -> None:
    spec = parse_spec("IVF1024,PQ16|nprobe=32")
    assert spec.structure == "IVF1024,PQ16"
    assert spec.params_dict == {"nprobe": 32}
    assert spec.pq == (16, 8) and spec.nlist == 1024
    assert str(spec.with_params(nprobe=64)) == "IVF1024,PQ16|nprobe=64"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "LSH",
        "HNSW",
        "IVF1024",
        "IVF1024,LSH",
        "Flat,Flat",
        "Exact,Flat",
        "IVF0,Flat",
        "HNSW1",
        "HNSW32,PQ8",
        "IVF64,PQ8x17",
        "HNSW32|",
        "HNSW32|nprobe=3",
        "IVF8,Flat|efSearch=3",
        "Flat|nprobe=1",
        "HNSW32|efSearch=0",
        "HNSW32|efSearch=abc",
        "HNSW32|efSearch",
    ],
)
def test_unknown_or_invalid_specs_raise_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_spec(text)
    with pytest.raises(ConfigError):
        make_index(text, 8)


def test_set_params_updates_spec_and_rejects_unknown_knobs() -> None:
    index = make_index("HNSW8", 8)
    assert str(index.spec) == "HNSW8"
    index.set_params(efSearch=77)
    assert index.params == {"efSearch": 77}
    assert str(index.spec) == "HNSW8|efSearch=77"
    assert make_index(str(index.spec), 8).params == {"efSearch": 77}
    with pytest.raises(ConfigError, match="nprobe"):
        index.set_params(nprobe=4)
    with pytest.raises(ConfigError, match="positive integer"):
        index.set_params(efSearch=-1)


def test_structure_errors_that_need_the_dimension() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        make_index("IVF4,PQ5", 32)
    with pytest.raises(ConfigError, match="metric"):
        make_index("Flat", 32, metric="cosine")
    with pytest.raises(ConfigError, match="dim"):
        make_index("Exact", 0)
