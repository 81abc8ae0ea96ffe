"""Bundle writing and verified loading: layout, checksums, size budget, and every kind of bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from turborec.edge import EDGE_FORMAT_VERSION, EdgeBundle, EdgeReranker, load_bundle
from turborec.errors import ArtifactError, ConfigError, UnknownIdError
from turborec.export import EdgeModels, SessionFactory, write_bundle
from turborec.train import TwoTowerRecommender

FILES = ("user_model.onnx", "reranker.onnx", "session.json", "session.safetensors")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite_manifest(root: Path, name: str) -> None:
    """Record ``name``'s current bytes in the manifest, as a forger (or a buggy server) would."""
    manifest = json.loads((root / "manifest.json").read_text())
    blob = (root / name).read_bytes()
    manifest["files"][name] = hashlib.sha256(blob).hexdigest()
    manifest["info"]["sizes"][name] = len(blob)
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_bundle_layout_manifest_and_round_trip(mlp_bundle: EdgeBundle, mlp_bundle_dir: Path) -> None:
    manifest = json.loads((mlp_bundle_dir / "manifest.json").read_text())
    assert manifest["kind"] == "edge-bundle" and manifest["format_version"] == 1
    assert manifest["config"]["edge_format_version"] == EDGE_FORMAT_VERSION
    assert manifest["config"]["model_version"] == mlp_bundle.model_version
    assert manifest["config"]["reranker"] == "mlp" and manifest["config"]["weights"] == "int8-dynamic"
    for name in FILES:
        blob = (mlp_bundle_dir / name).read_bytes()
        assert manifest["files"][name] == hashlib.sha256(blob).hexdigest()
        assert manifest["info"]["sizes"][name] == len(blob)
    total = sum(manifest["info"]["sizes"].values())
    assert total == manifest["info"]["bundle_bytes"] <= 5_000_000

    loaded = load_bundle(mlp_bundle_dir, expect_model_version=mlp_bundle.model_version)
    assert loaded.item_ids == mlp_bundle.item_ids and loaded.history_ids == mlp_bundle.history_ids
    assert loaded.titles is not None and len(loaded.titles) == loaded.n_candidates
    for name, arr in mlp_bundle.tensors.items():
        np.testing.assert_array_equal(loaded.tensors[name], arr)
        assert loaded.tensors[name].dtype == arr.dtype
    assert loaded.tensors["item_q"].dtype == np.uint8  # compact int8 row-wise embeddings travel


def test_size_budget_is_enforced(mlp_bundle: EdgeBundle, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"over the budget of 50,000.*candidates fit"):
        write_bundle(mlp_bundle, tmp_path / "small", max_bytes=50_000)
    assert not (tmp_path / "small").exists()


def test_truncated_file_is_named(mlp_bundle_dir: Path, tmp_path: Path) -> None:
    root = _copy(mlp_bundle_dir, tmp_path / "b")
    blob = (root / "session.safetensors").read_bytes()
    (root / "session.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ArtifactError, match=r"'session.safetensors' is truncated \(\d+ of \d+ bytes\)"):
        load_bundle(root)


def test_corrupted_file_fails_checksum(mlp_bundle_dir: Path, tmp_path: Path) -> None:
    root = _copy(mlp_bundle_dir, tmp_path / "b")
    blob = bytearray((root / "user_model.onnx").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (root / "user_model.onnx").write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match=r"checksum mismatch for 'user_model\.onnx'"):
        load_bundle(root)


def test_missing_file_and_missing_dir(mlp_bundle_dir: Path, tmp_path: Path) -> None:
    root = _copy(mlp_bundle_dir, tmp_path / "b")
    (root / "reranker.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"'reranker\.onnx' is missing"):
        load_bundle(root)
    with pytest.raises(ArtifactError, match="no edge bundle directory"):
        load_bundle(tmp_path / "nowhere")
    (root / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="not an edge bundle"):
        load_bundle(root)


def test_unknown_format_versions_are_refused(mlp_bundle_dir: Path, tmp_path: Path) -> None:
    root = _copy(mlp_bundle_dir, tmp_path / "b")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["config"]["edge_format_version"] = EDGE_FORMAT_VERSION + 1
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="edge bundle format version 2 is not supported"):
        load_bundle(root)
    manifest["config"]["edge_format_version"], manifest["kind"] = EDGE_FORMAT_VERSION, "retrieval"
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="not an edge bundle"):
        load_bundle(root)


def test_bundle_from_another_model_version(
    mlp_bundle_dir: Path, dot_models: EdgeModels, mlp_models: EdgeModels, two_tower: TwoTowerRecommender, tmp_path: Path
) -> None:
    assert dot_models.model_version != mlp_models.model_version
    # a runtime pinned to one version refuses another's bundle
    with pytest.raises(ArtifactError, match=f"bundle is for model version '{mlp_models.model_version}'"):
        load_bundle(mlp_bundle_dir, expect_model_version=dot_models.model_version)
    # loaded models refuse another version's session
    dot_bundle = SessionFactory(two_tower, dot_models, 50).session(-1, np.array([0, 1, 2]))
    reranker = EdgeReranker(load_bundle(mlp_bundle_dir))
    with pytest.raises(ArtifactError, match="loaded models are version"):
        reranker.use_bundle(dot_bundle)
    # session files spliced in from another export, manifest checksums made to match
    other = write_bundle(dot_bundle, tmp_path / "dot")
    root = _copy(mlp_bundle_dir, tmp_path / "spliced")
    for name in ("session.json", "session.safetensors"):
        shutil.copy(other / name, root / name)
        _rewrite_manifest(root, name)
    with pytest.raises(ArtifactError, match=r"built for model version .* \(files from two different exports\)"):
        load_bundle(root)


def test_unknown_item_ids(mlp_bundle_dir: Path) -> None:
    bundle = load_bundle(mlp_bundle_dir)
    reranker = EdgeReranker(bundle)
    first = bundle.item_ids[0]
    with pytest.raises(UnknownIdError, match="item 'no-such-item' is not in this edge bundle"):
        reranker.rerank([first, "no-such-item"])
    kept, _ = reranker.rerank([first, "no-such-item"], unknown="ignore")
    assert str(first) not in {str(i) for i in kept}
    assert str(first) in bundle and str(bundle.item_ids[1]) in bundle  # ids match as strings ("42" == 42)


def test_tensor_shapes_are_checked(mlp_bundle: EdgeBundle) -> None:
    bad = dict(mlp_bundle.tensors)
    bad["item_q"] = bad["item_q"][:, :-1]
    with pytest.raises(ArtifactError, match="session tensor 'item_q' is uint8"):
        EdgeBundle(
            mlp_bundle.model_version, mlp_bundle.config, mlp_bundle.user_model, mlp_bundle.reranker,
            mlp_bundle.item_ids, mlp_bundle.history_ids, bad,
        )  # fmt: skip
