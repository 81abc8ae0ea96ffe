"""A static file server for the browser demo: the page, onnxruntime-web's files and bundles, on 127.0.0.1.

The page needs no server logic, only files from three places under one origin (so that fetch and
WebAssembly loading work without CORS)::

    /                   the page (turborec/edge/web: index.html, edge.js, app.js, style.css)
    /ort/               onnxruntime-web's dist folder (web/node_modules/onnxruntime-web/dist from npm)
    /bundles/<name>/    bundle directories written by turborec.export

>>> with DemoServer(ort_dist, {"demo": "bundle/"}) as server:
...     print(server.url + "?bundle=bundles/demo/")
"""

from __future__ import annotations

import http.server
import mimetypes
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from turborec.errors import ConfigError

WEB_DIR = Path(__file__).resolve().parent / "web"
_TYPES = {".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript", ".onnx": "application/octet-stream"}


class _Handler(http.server.SimpleHTTPRequestHandler):
    routes: dict[str, Path] = {}

    def translate_path(self, path: str) -> str:
        """Map a URL path onto the mounted folders; anything outside them (or ``..``) maps to nowhere."""
        rel = unquote(urlsplit(path).path)
        for prefix in sorted(self.routes, key=len, reverse=True):
            if rel == prefix.rstrip("/") or rel.startswith(prefix):
                root = self.routes[prefix]
                target = (root / rel[len(prefix) :].lstrip("/")).resolve()
                if target == root or root in target.parents:
                    return str(target)
                break
        return str(WEB_DIR / "__not_found__")

    def guess_type(self, path: str | Any) -> str:
        return _TYPES.get(Path(str(path)).suffix, mimetypes.guess_type(str(path))[0] or "application/octet-stream")

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")  # tests rewrite bundles in place between page loads
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks read stdout
        return


class DemoServer:
    """Serves the demo page, onnxruntime-web and named bundle folders on ``host``:``port`` (0: any free port).

    Binds 127.0.0.1 by default. Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        ort_dist: str | Path,
        bundles: Mapping[str, str | Path] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        web_dir: str | Path = WEB_DIR,
    ) -> None:
        ort = Path(ort_dist).resolve()
        if not (ort / "ort.wasm.min.js").is_file():
            raise ConfigError(
                f"{ort}: not onnxruntime-web's dist folder (no ort.wasm.min.js); run 'npm ci' in web/ first"
            )
        routes = {"/": Path(web_dir).resolve(), "/ort/": ort}
        for name, folder in (bundles or {}).items():
            if not name or "/" in name or name.startswith("."):
                raise ConfigError(f"bundle name {name!r} must be a plain folder name")
            routes[f"/bundles/{name}/"] = Path(folder).resolve()
        handler = type("DemoHandler", (_Handler,), {"routes": routes})
        self._httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> DemoServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="turborec-edge-demo", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
