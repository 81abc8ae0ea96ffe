"""ServeSettings: safe defaults, validation that names the option, the environment as the only other source."""

from __future__ import annotations

from pathlib import Path

import pytest

from turborec.errors import ConfigError
from turborec.serving import ServeSettings


def test_defaults_are_safe() -> None:
    s = ServeSettings()
    assert s.host == "127.0.0.1"
    assert s.admin_token is None and not s.admin_enabled
    assert s.slo_p99_s == pytest.approx(0.010)


def test_environment_then_overrides() -> None:
    env = {
        "TURBOREC_SERVE_PORT": "9001",
        "TURBOREC_SERVE_SLO_P99_MS": "25",
        "TURBOREC_SERVE_ADMIN_TOKEN": "s3cret-token",
        "TURBOREC_SERVE_ADAPTIVE_TIERS": "false",
        "TURBOREC_SERVE_ARTIFACT": "/models/a",
        "UNRELATED": "x",
    }
    s = ServeSettings.from_env(env, port=9002, max_batch=None)
    assert s.port == 9002  # an explicit option beats the environment; None means "not given"
    assert s.slo_p99_ms == 25.0
    assert s.admin_token == "s3cret-token" and s.admin_enabled
    assert s.adaptive_tiers is False
    assert s.artifact == Path("/models/a")
    assert s.max_batch == ServeSettings().max_batch


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("port", "eighty", "port='eighty'"),
        ("slo_p99_ms", "0", "slo_p99_ms"),
        ("max_k", "0", "max_k"),
        ("store", "mongo", "store"),
        ("executor", "gpu", "executor"),
        ("admin_token", "short", "admin_token"),
        ("adaptive_tiers", "maybe", "adaptive_tiers"),
    ],
)
def test_bad_values_name_the_option(option: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServeSettings.from_env({f"TURBOREC_SERVE_{option.upper()}": value})


def test_unknown_option_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown option .colour."):
        ServeSettings.from_mapping({"colour": "blue"})


def test_a_bad_token_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        ServeSettings(admin_token="abc")
    assert "abc" not in str(info.value)

