"""The artifact directory: atomic write, checksums, refusal of corrupted or unknown versions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from turborec._util.artifact import FORMAT_VERSION, load_artifact, save_artifact
from turborec.errors import ArtifactError


def _write(path: Path) -> Path:
    return save_artifact(
        path,
        kind="retrieval",
        config={"a": 1},
        tensors={"w": np.arange(12, dtype=np.float32).reshape(3, 4)},
        json_files={"vocab/items.json": {"ids": [1, 2, 3]}},
    )


def test_round_trip(tmp_path: Path) -> None:
    art = load_artifact(_write(tmp_path / "m"))
    assert art.kind == "retrieval" and art.config == {"a": 1}
    np.testing.assert_array_equal(art.numpy_tensors()["w"], np.arange(12, dtype=np.float32).reshape(3, 4))
    assert art.json("vocab/items.json")["ids"] == [1, 2, 3]
    assert not list(tmp_path.glob(".m.tmp-*")), "temporary directory left behind"


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "m")
    weights = path / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7])
    with pytest.raises(ArtifactError, match="checksum"):
        load_artifact(path)


def test_flipped_byte_and_missing_file_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "m")
    vocab = path / "vocab" / "items.json"
    vocab.write_text(vocab.read_text().replace("2", "7"))
    with pytest.raises(ArtifactError, match="checksum"):
        load_artifact(path)
    vocab.unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_artifact(path)


def test_unknown_version_and_kind_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format version"):
        load_artifact(path)
    path2 = _write(tmp_path / "m2")
    with pytest.raises(ArtifactError, match="kind"):
        load_artifact(path2, kinds=("ranker",))
    with pytest.raises(ArtifactError):
        load_artifact(tmp_path / "nothing-here")


def test_failed_write_keeps_the_old_artifact(tmp_path: Path) -> None:
    path = _write(tmp_path / "m")

    def boom(_: Path) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_artifact(path, kind="retrieval", config={"a": 2}, extra=boom)
    assert load_artifact(path).config == {"a": 1}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m.")]
