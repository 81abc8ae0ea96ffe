"""Starting a server under test in its own process."""

from __future__ import annotations

import sys

import pytest

from turborec.bench.process import start_http_server
from turborec.errors import ConfigError


def test_a_server_that_dies_is_reported_with_its_stderr() -> None:
    cmd = [sys.executable, "-c", "import sys; sys.stderr.write('bad artifact: checksum mismatch'); sys.exit(3)"]
    with pytest.raises(ConfigError, match="the test server exited: bad artifact: checksum mismatch"):
        start_http_server(cmd, 9, timeout_s=30, name="the test server")


def test_a_server_that_never_answers_is_stopped() -> None:
    cmd = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(ConfigError, match="did not come up in 1 s"):
        start_http_server(cmd, 9, timeout_s=1.0)
