"""A server under test in its own process: start it, wait until it answers ``/healthz``, stop it."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence

from turborec.errors import ConfigError


def start_http_server(
    cmd: Sequence[str],
    port: int,
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 180.0,
    name: str = "the server",
) -> subprocess.Popen[bytes]:
    """Run ``cmd`` (a server that listens on 127.0.0.1:``port``) and return once ``/healthz`` answers 200.

    If it exits first or does not come up within ``timeout_s``, it is stopped and a ``ConfigError``
    carries the end of its stderr."""
    import httpx

    log = tempfile.TemporaryFile()  # noqa: SIM115  (closed below; the child keeps its own descriptor)
    proc = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                            env=dict(env) if env is not None else None)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log.seek(0)
                raise ConfigError(f"{name} exited: {log.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise ConfigError(f"{name} did not come up in {timeout_s:.0f} s")
    except BaseException:
        stop_process(proc)
        raise
    finally:
        log.close()


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


__all__ = ["start_http_server", "stop_process"]
