"""One way to prepare a fresh machine (issue 15.12): the README's setup command with ``--system`` installs
what the tests use outside Python, and CI runs exactly that command."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ci_prepares_the_machine_with_the_readme_setup_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash scripts/setup.sh --system all" in ci
    assert "apt-get" not in ci and "npm ci" not in ci  # no second way of doing it


def test_setup_system_installs_redis_chromium_and_the_web_packages() -> None:
    script = (REPO / "scripts" / "setup.sh").read_text()
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "setup.sh")], timeout=30).returncode == 0
    for needed in ("redis-server", "chromium", "npm ci", "apt-get install"):
        assert needed in script
    readme = (REPO / "README.md").read_text()
    assert "bash scripts/setup.sh --system" in readme
    assert "tests/edge/test_browser.py" in readme and "Redis" in readme  # what is skipped without it
    assert readme.count("bash scripts/setup.sh && .venv/bin/turborec quickstart") == 1  # the first command stays


def test_an_unknown_system_without_apt_says_so_in_one_line(tmp_path: Path) -> None:
    # a PATH with bash but no apt-get, redis-server or chromium: --system stops with one line, exit 2
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "id", "dirname"):
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        (bin_dir / tool).symlink_to(found)
    res = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh"), "--system"], capture_output=True, text=True,
                         timeout=60, env={"PATH": str(bin_dir)})
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "no apt-get" in res.stderr
