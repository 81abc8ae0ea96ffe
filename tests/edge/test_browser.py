"""End to end in headless Chromium: the demo page loads a bundle with onnxruntime-web (WASM), shows the
candidates, re-ranks them as items are clicked, agrees with the Python runtime, and shows a visible
error for every kind of bad bundle or click.

Needs Debian's chromium (``apt-get install chromium``) and ``npm ci`` in ``web/`` (onnxruntime-web,
playwright-core); skips without them. The page is served by DemoServer on 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from turborec.edge import EdgeReranker, load_bundle
from turborec.edge.demo import DemoServer
from turborec.export import EdgeModels, SessionFactory, write_bundle
from turborec.train import TwoTowerRecommender

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
ORT_DIST = WEB / "node_modules" / "onnxruntime-web" / "dist"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PNG = b"\x89PNG\r\n\x1a\n"


def _missing() -> list[str]:
    checks = (
        ("node", shutil.which("node") is not None),
        ("chromium (apt-get install chromium)", Path(CHROMIUM).is_file()),
        ("web/node_modules (npm ci in web/)", (WEB / "node_modules" / "playwright-core").is_dir() and ORT_DIST.is_dir()),
    )
    return [what for what, ok in checks if not ok]


# checked before any fixture is built, so a machine without a browser skips at once
pytestmark = pytest.mark.skipif(bool(_missing()), reason="browser test needs " + ", ".join(_missing()))


def _tamper(src: Path, dst: Path, name: str, how: str) -> Path:
    shutil.copytree(src, dst)
    blob = bytearray((dst / name).read_bytes())
    if how == "truncate":
        (dst / name).write_bytes(bytes(blob[: len(blob) // 3]))
    elif how == "flip":
        blob[len(blob) // 2] ^= 0xFF
        (dst / name).write_bytes(bytes(blob))
    elif how == "delete":
        (dst / name).unlink()
    return dst


def _splice(src: Path, other: Path, dst: Path) -> Path:
    """src's models with other's session files, checksums recomputed: only the version check can tell."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    for name in ("session.json", "session.safetensors"):
        shutil.copy(other / name, dst / name)
        blob = (dst / name).read_bytes()
        manifest["files"][name] = hashlib.sha256(blob).hexdigest()
        manifest["info"]["sizes"][name] = len(blob)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def _drive(server: DemoServer, scenarios: list[dict[str, Any]], out_dir: Path) -> dict[str, dict[str, Any]]:
    spec = {"baseUrl": server.url, "outDir": str(out_dir), "chromium": CHROMIUM, "scenarios": scenarios}
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_path = out_dir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run(
        ["node", str(WEB / "edge_driver.cjs"), str(spec_path)], capture_output=True, text=True, timeout=400, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {s["name"]: s for s in json.loads(proc.stdout)["scenarios"]}


def test_page_reranks_on_clicks_and_reports_bad_input(
    mlp_bundle_dir: Path, two_tower: TwoTowerRecommender, dot_models: EdgeModels, tmp_path: Path
) -> None:
    assert two_tower.histories is not None
    other = write_bundle(SessionFactory(two_tower, dot_models, 100).session(7, two_tower.histories.of(7)), tmp_path / "other")
    bundles = {
        "good": mlp_bundle_dir,
        "other": other,
        "truncated": _tamper(mlp_bundle_dir, tmp_path / "truncated", "session.safetensors", "truncate"),
        "corrupt": _tamper(mlp_bundle_dir, tmp_path / "corrupt", "reranker.onnx", "flip"),
        "missing": _tamper(mlp_bundle_dir, tmp_path / "missing", "user_model.onnx", "delete"),
        "spliced": _splice(mlp_bundle_dir, other, tmp_path / "spliced"),
    }
    bundle = load_bundle(mlp_bundle_dir)
    probe_clicks = [str(i) for i in bundle.item_ids[:3]]
    shots = tmp_path / "shots"
    scenarios = [
        {"name": "main", "query": "?bundle=bundles/good/", "clickPositions": [4, 9, 2], "screenshot": True,
         "scoresFor": probe_clicks},
        {"name": "truncated", "query": "?bundle=bundles/truncated/"},
        {"name": "corrupt", "query": "?bundle=bundles/corrupt/"},
        {"name": "missing", "query": "?bundle=bundles/missing/"},
        {"name": "spliced", "query": "?bundle=bundles/spliced/"},
        {"name": "other-version", "query": "?bundle=bundles/good/&session=bundles/other/"},
        {"name": "unknown-click", "query": "?bundle=bundles/good/&clicks=no-such-item"},
    ]  # fmt: skip
    with DemoServer(ORT_DIST, bundles) as server:
        assert server.url.startswith("http://127.0.0.1:")
        seen = _drive(server, scenarios, shots)

    main = seen["main"]
    assert main["status"] == "ready" and main["error"] is None and not main["errorVisible"]
    assert main["consoleErrors"] == []
    assert main["bundleBytes"] <= 5_000_000 and main["coldStartMs"] > 0
    assert len(main["order0"]) == 20 and len(main["order1"]) == 20
    assert main["order0"] != main["order1"], "the list must be re-ranked after clicks"
    assert not set(main["clickedIds"]) & set(main["order1"]), "clicked items leave the list"
    before, after, page = (Path(p).read_bytes() for p in main["screenshots"])
    assert before.startswith(PNG) and after.startswith(PNG) and page.startswith(PNG)
    assert before != after, "the screenshot of the list must change after the clicks"

    # the page's WASM runtime computes what the Python runtime computes
    runtime = EdgeReranker(bundle)
    np.testing.assert_allclose(main["scores"], runtime.scores(probe_clicks), rtol=1e-4, atol=1e-4)
    py_ids, _ = runtime.rerank(main["clickedIds"], k=20)
    assert [str(i) for i in py_ids] == main["order1"]

    expected_errors = {
        "truncated": r"Cannot load bundle: bundle file 'session.safetensors' is truncated \(\d+ of \d+ bytes\)",
        "corrupt": r"Cannot load bundle: checksum mismatch for bundle file 'reranker.onnx'",
        "missing": r"Cannot load bundle: bundle file 'user_model.onnx' is missing \(HTTP 404\)",
        "spliced": r"Cannot load bundle: session.json was built for model version '\w+' but the bundle's models are version",
        "other-version": r"Cannot load bundle: .*bundle is for model version '\w+', but the loaded models are version",
        "unknown-click": r"Cannot re-rank: item no-such-item is not in this edge bundle",
    }
    for name, pattern in expected_errors.items():
        s = seen[name]
        assert s["errorVisible"], f"{name}: no visible error"
        assert re.search(pattern, s["errorText"]), f"{name}: {s['errorText']!r}"
    assert seen["unknown-click"]["status"] == "ready"  # a bad click leaves the page usable
