"""Artifacts describe their training data without paths, and every file in them has the same mode."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from turborec.cli.main import main
from turborec.data import synthetic


def test_manifest_records_name_size_hash_and_uniform_modes(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "nested" / "events.csv"
    data.parent.mkdir()
    synthetic(n_users=80, n_items=40, n_interactions=1200, seed=2).to_pandas().to_csv(data, index=False)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", "nested/events.csv", "--split", "none", "--model", "popularity",
                 "--out", "model", "--quiet"]) == 0
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    recorded = manifest["metrics"]["data"]
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    assert recorded == {"format": "csv", "files": [{"file": "events.csv", "bytes": data.stat().st_size,
                                                    "sha256": digest}]}
    assert "nested" not in json.dumps(manifest) and str(tmp_path) not in json.dumps(manifest)
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777)
             for p in [tmp_path / "model", *(tmp_path / "model").rglob("*")]}
    assert modes.pop("model/weights.safetensors") == "0o644"
    assert {m for p, m in modes.items() if os.path.isdir(tmp_path / p)} == {"0o755"}
    assert {m for p, m in modes.items() if os.path.isfile(tmp_path / p)} == {"0o644"}
