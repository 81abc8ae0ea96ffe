"""The documentation runs: every fenced ``bash`` and ``python`` block of README.md and of each docs
page's "Usage" section is executed, in order, in a temporary folder, and must exit 0.

How blocks are run:

- All blocks of one page share one folder (later blocks use what earlier ones wrote, e.g. runs/tt).
  ``../shared/data`` there is a small copy: MovieLens latest-small cut to its first 400 users
  (ratings.csv + movies.csv) and the real Criteo 10k sample; ``TURBOREC_SMOKE=3`` caps every
  training run at 3 seconds. bash blocks run under ``bash -euo pipefail`` with ``turborec`` on PATH,
  python blocks with ``python``.
- A comment ``<!-- readme-test: slow -->`` before a block runs it only in the slow variant
  (``pytest -m slow tests/test_readme.py``); ``slow serve`` starts the block in the background
  (its own process group), waits for /readyz, runs the page's next blocks against it, and stops it
  (SIGTERM, then SIGKILL). Serve and loadtest blocks are rewritten from port 8000 to a free port;
  servers bind 127.0.0.1 (the default).
- ``<!-- readme-test: ci -->`` marks the install block (scripts/setup.sh, scripts/test.sh): CI's
  ``.ci/run`` runs those two scripts verbatim on a clean machine; the slow variant runs the rest of
  the block (``turborec quickstart``) with the two scripts replaced by ``true``.

Default suite (about 2-3 minutes on 2 cores): README's untagged blocks (train two-tower, evaluate,
recommend, the Python API, your own files). Slow variant: every block of README.md and of
docs/compression.md's Usage section, including the pipeline, CTR, compress, export, quickstart,
serve, loadtest and tune blocks.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TURBOREC_SHARED_DATA", REPO.parent / "shared" / "data"))
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"(?:<!--\s*readme-test:\s*(?P<tag>[^>]*?)\s*-->\s*\n)?```(?P<lang>bash|python)\n(?P<body>.*?)```",
                   re.S)
BLOCK_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    body: str
    tags: frozenset[str]


def _usage_section(text: str) -> tuple[str, int]:
    """The '## Usage' section of a docs page and its first line number (empty when there is none)."""
    match = re.search(r"^## Usage\s*$", text, re.M)
    if not match:
        return "", 0
    rest = text[match.end():]
    end = re.search(r"^## ", rest, re.M)
    return rest[: end.start()] if end else rest, text[: match.end()].count("\n") + 1


def blocks_of(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    offset = 0
    if page.name != "README.md":
        text, offset = _usage_section(text)
    out = []
    for m in FENCE.finditer(text):
        tags = frozenset((m.group("tag") or "").split())
        out.append(Block(page.name, offset + text[: m.start("body")].count("\n"), m.group("lang"), m.group("body"), tags))
    return out


def test_the_pages_have_blocks_and_only_known_tags() -> None:
    readme = blocks_of(REPO / "README.md")
    assert len(readme) >= 6 and {b.lang for b in readme} == {"bash", "python"}
    for page in PAGES:
        for block in blocks_of(page):
            assert block.tags <= {"slow", "serve", "ci"}, f"{page.name}:{block.line}: unknown tag {block.tags}"


# ------------------------------------------------------------------ running
def _small_shared(root: Path) -> Path:
    """root/shared/data with a 400-user MovieLens latest-small and the Criteo sample."""
    import pandas as pd

    source = SHARED / "ml-latest-small"
    if not (source / "ratings.csv").is_file():
        pytest.skip(f"{source} is not available")
    data = root / "shared" / "data"
    ml = data / "ml-latest-small"
    ml.mkdir(parents=True)
    ratings = pd.read_csv(source / "ratings.csv")
    ratings[ratings["userId"] <= 400].to_csv(ml / "ratings.csv", index=False)
    shutil.copy(source / "movies.csv", ml / "movies.csv")
    criteo = SHARED / "criteo-sample-10k"
    if criteo.is_dir():
        (data / "criteo-sample-10k").symlink_to(criteo)
    return data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(bin_dir: Path) -> dict[str, str]:
    env = {**os.environ, "TURBOREC_SMOKE": "3", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _turborec_bin(root: Path) -> Path:
    """A ``turborec`` on PATH that is this checkout's CLI under this interpreter."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "turborec"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m turborec.cli.main "$@"\n')
    exe.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    return bin_dir


def _command(block: Block, port: int) -> list[str]:
    body = block.body.replace("8000", str(port))
    if "ci" in block.tags:
        body = body.replace("bash scripts/setup.sh", "true").replace("bash scripts/test.sh", "true")
        body = body.replace(".venv/bin/turborec", "turborec")
    if block.lang == "python":
        return [sys.executable, "-c", body]
    return ["bash", "-euo", "pipefail", "-c", body]


def _wait_ready(port: int, proc: subprocess.Popen[bytes], limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the served block exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"no /healthz on 127.0.0.1:{port} within {limit_s:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def run_page(page: Path, tmp_path: Path, slow: bool) -> int:
    """Run the page's blocks (untagged ones; all of them when ``slow``); returns how many ran."""
    _small_shared(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = _env(_turborec_bin(tmp_path))
    port = _free_port()
    servers: list[subprocess.Popen[bytes]] = []
    ran = 0
    try:
        for block in blocks_of(page):
            if block.tags and not slow:
                continue
            where = f"{block.page}:{block.line} ({block.lang})"
            if "serve" in block.tags:
                proc = subprocess.Popen(_command(block, port), cwd=work, env=env, start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                servers.append(proc)
                _wait_ready(port, proc)
            else:
                res = subprocess.run(_command(block, port), cwd=work, env=env, capture_output=True, text=True,
                                     timeout=BLOCK_TIMEOUT_S)
                assert res.returncode == 0, f"{where} failed ({res.returncode}):\n{block.body}\n{res.stderr[-3000:]}"
                assert "Traceback" not in res.stderr, f"{where} printed a traceback:\n{res.stderr[-3000:]}"
            ran += 1
    finally:
        for proc in servers:
            _stop(proc)
    return ran


PAGE_IDS = [p.relative_to(REPO).as_posix() for p in PAGES if blocks_of(p)]


@pytest.mark.parametrize("page", [p for p in PAGE_IDS if any(not b.tags for b in blocks_of(REPO / p))])
def test_page_runs(page: str, tmp_path: Path) -> None:
    assert run_page(REPO / page, tmp_path, slow=False) > 0


@pytest.mark.slow
@pytest.mark.timeout(3600)  # quickstart, pipeline, CTR, compress, serve + a 30 s load test, a 5-minute tune
@pytest.mark.parametrize("page", PAGE_IDS)
def test_page_runs_with_slow_blocks(page: str, tmp_path: Path) -> None:
    ran = run_page(REPO / page, tmp_path, slow=True)
    assert ran == len(blocks_of(REPO / page))
