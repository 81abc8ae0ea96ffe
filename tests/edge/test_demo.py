"""The demo's static server: mounts, content types, loopback only, nothing outside the mounted folders."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from turborec.edge.demo import WEB_DIR, DemoServer
from turborec.errors import ConfigError


@pytest.fixture()
def fake_ort(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "ort.wasm.min.js").write_text("// stand-in")
    (dist / "ort-wasm-simd-threaded.wasm").write_bytes(b"\0asm")
    return dist


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, "", b""


def test_mounts_types_and_traversal(fake_ort: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("no")
    with DemoServer(fake_ort, {"demo": bundle}) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, ctype, body = _get(server.url)
        assert status == 200 and ctype.startswith("text/html") and body == (WEB_DIR / "index.html").read_bytes()
        assert _get(server.url + "edge.js")[1] == "text/javascript"
        assert _get(server.url + "ort/ort-wasm-simd-threaded.wasm")[1] == "application/wasm"
        assert _get(server.url + "bundles/demo/manifest.json")[2] == b"{}"
        for path in ("bundles/demo/../secret.txt", "bundles/demo/%2e%2e/secret.txt", "ort/../secret.txt", "nothing"):
            assert _get(server.url + path)[0] == 404


def test_bad_configuration(tmp_path: Path, fake_ort: Path) -> None:
    with pytest.raises(ConfigError, match="npm ci"):
        DemoServer(tmp_path)
    with pytest.raises(ConfigError, match="plain folder name"):
        DemoServer(fake_ort, {"../x": tmp_path})


def test_page_files_are_package_data() -> None:
    for name in ("index.html", "edge.js", "app.js", "style.css"):
        assert (WEB_DIR / name).is_file()
