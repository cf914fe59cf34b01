"""Start-up refuses a missing or malformed setting with a `ConfigError` that names it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from handler import create_app
from handler.config import DEFAULT_DATABASE_URL, ServiceConfig
from runkeys.errors import ConfigError
from runkeys.github.pacing import Limits
from runkeys.oidc import GITHUB_ISSUER

PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    .decode()
)
VALID = {
    "RUNKEYS_WEBHOOK_SECRET": "a webhook secret",
    "RUNKEYS_APP_ID": "123456",
    "RUNKEYS_PRIVATE_KEY": PEM,
    "RUNKEYS_OIDC_AUDIENCE": "https://runkeys.example",
}


def test_defaults() -> None:
    config = ServiceConfig.from_env(VALID)
    assert config.database_url == DEFAULT_DATABASE_URL
    assert config.oidc_issuer == GITHUB_ISSUER
    assert config.max_ttl == timedelta(hours=24)
    assert config.github is not None
    assert config.github.api_url == "https://api.github.com"
    assert config.worker.embedded
    assert config.worker.github_limits() == Limits()  # GitHub's documented limits, real time
    assert "a webhook secret" not in repr(config)
    assert "PRIVATE KEY" not in repr(config)


def test_everything_can_be_set() -> None:
    config = ServiceConfig.from_env(
        {
            **VALID,
            "RUNKEYS_DATABASE_URL": "postgres://runkeys:pw@db.internal/ledger",
            "RUNKEYS_OIDC_ISSUER": "https://ghes.example/_services/token/",
            "GITHUB_API_URL": "https://ghes.example/api/v3",
            "RUNKEYS_MAX_TTL": "2h30m",
            "RUNKEYS_CONNECTION_CI_DB": "postgresql://admin:pw@db/ci",
            "RUNKEYS_WORKER": "external",
            "RUNKEYS_WORKER_POLL_INTERVAL": "0.25",
            "RUNKEYS_WORKER_MAX_ATTEMPTS": "4",
            "RUNKEYS_WORKER_BACKOFF_MAX": "10m",
            "RUNKEYS_LOG_LEVEL": "debug",
            "RUNKEYS_GITHUB_WRITES_PER_MINUTE": "40",
            "RUNKEYS_GITHUB_TIME_FACTOR": "60",
        }
    )
    assert config.database_url == "postgresql+psycopg://runkeys:pw@db.internal/ledger"
    assert config.oidc_issuer == "https://ghes.example/_services/token"
    assert config.max_ttl == timedelta(hours=2, minutes=30)
    assert list(config.connections) == ["CI_DB"]
    assert not config.worker.embedded
    assert config.worker.poll_interval == 0.25
    assert config.worker.max_attempts == 4
    assert config.worker.backoff_max == timedelta(minutes=10)
    assert config.log_level == "DEBUG"
    limits = config.worker.github_limits()
    assert (limits.writes_per_minute, limits.writes_per_hour) == (40, 500)
    assert (limits.minute, limits.hour, limits.secondary_wait) == (1.0, 60.0, 1.0)


def test_the_private_key_may_come_from_a_file_or_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "app.pem"
    path.write_text(PEM)
    without = {k: v for k, v in VALID.items() if k != "RUNKEYS_PRIVATE_KEY"}
    from_file = ServiceConfig.from_env({**without, "RUNKEYS_PRIVATE_KEY_FILE": str(path)})
    one_line = ServiceConfig.from_env({**VALID, "RUNKEYS_PRIVATE_KEY": PEM.replace("\n", "\\n")})
    assert from_file.github == one_line.github


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"RUNKEYS_WEBHOOK_SECRET": None}, "RUNKEYS_WEBHOOK_SECRET"),
        ({"RUNKEYS_WEBHOOK_SECRET": "  "}, "RUNKEYS_WEBHOOK_SECRET"),
        ({"RUNKEYS_APP_ID": None}, "RUNKEYS_APP_ID"),
        ({"RUNKEYS_APP_ID": "my-app"}, "RUNKEYS_APP_ID"),
        ({"RUNKEYS_PRIVATE_KEY": None}, "RUNKEYS_PRIVATE_KEY"),
        ({"RUNKEYS_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n"}, "RUNKEYS_PRIVATE_KEY"),
        ({"RUNKEYS_PRIVATE_KEY_FILE": "/nonexistent/app.pem"}, "RUNKEYS_PRIVATE_KEY"),
        (
            {"RUNKEYS_PRIVATE_KEY": None, "RUNKEYS_PRIVATE_KEY_FILE": "/nonexistent/app.pem"},
            "RUNKEYS_PRIVATE_KEY_FILE",
        ),
        ({"RUNKEYS_OIDC_AUDIENCE": None}, "RUNKEYS_OIDC_AUDIENCE"),
        ({"RUNKEYS_OIDC_ISSUER": "http://token.example"}, "RUNKEYS_OIDC_ISSUER"),
        ({"RUNKEYS_OIDC_ISSUER": "token.actions.githubusercontent.com"}, "RUNKEYS_OIDC_ISSUER"),
        ({"GITHUB_API_URL": "ftp://api.example"}, "GITHUB_API_URL"),
        ({"RUNKEYS_DATABASE_URL": "not a url"}, "RUNKEYS_DATABASE_URL"),
        ({"RUNKEYS_DATABASE_URL": "mysql://root@db/ledger"}, "RUNKEYS_DATABASE_URL"),
        ({"RUNKEYS_DATABASE_URL": "sqlite://"}, "RUNKEYS_DATABASE_URL"),
        ({"RUNKEYS_MAX_TTL": "forever"}, "RUNKEYS_MAX_TTL"),
        ({"RUNKEYS_MAX_TTL": "0"}, "RUNKEYS_MAX_TTL"),
        ({"RUNKEYS_MAX_TTL": "-5"}, "RUNKEYS_MAX_TTL"),
        ({"RUNKEYS_CONNECTION_9X": "postgres://x@y/z"}, "RUNKEYS_CONNECTION_9X"),
        ({"RUNKEYS_CONNECTION_CI": " "}, "RUNKEYS_CONNECTION_CI"),
        ({"RUNKEYS_CONNECTION_CI": "postgresql://u:AAAA@AAAA@db/ci"}, "RUNKEYS_CONNECTION_CI"),
        ({"RUNKEYS_WORKER": "both"}, "RUNKEYS_WORKER"),
        ({"RUNKEYS_WORKER_BATCH_SIZE": "0"}, "RUNKEYS_WORKER_BATCH_SIZE"),
        ({"RUNKEYS_WORKER_MAX_ATTEMPTS": "many"}, "RUNKEYS_WORKER_MAX_ATTEMPTS"),
        ({"RUNKEYS_WORKER_POLL_INTERVAL": "nan"}, "RUNKEYS_WORKER_POLL_INTERVAL"),
        ({"RUNKEYS_WORKER_CLAIM_TIMEOUT": "1y"}, "RUNKEYS_WORKER_CLAIM_TIMEOUT"),
        ({"RUNKEYS_SWEEP_INTERVAL": "inf"}, "RUNKEYS_SWEEP_INTERVAL"),
        ({"RUNKEYS_BACKLOG_WARN_AFTER": "soon"}, "RUNKEYS_BACKLOG_WARN_AFTER"),
        ({"RUNKEYS_WEBHOOK_MAX_BYTES": "12"}, "RUNKEYS_WEBHOOK_MAX_BYTES"),
        ({"RUNKEYS_API_MAX_BYTES": "1023"}, "RUNKEYS_API_MAX_BYTES"),
        ({"RUNKEYS_API_MAX_BYTES": "256KiB"}, "RUNKEYS_API_MAX_BYTES"),
        ({"RUNKEYS_NOT_INSTALLED_TTL": "0"}, "RUNKEYS_NOT_INSTALLED_TTL"),
        ({"RUNKEYS_NOT_INSTALLED_TTL": "soon"}, "RUNKEYS_NOT_INSTALLED_TTL"),
        ({"RUNKEYS_GITHUB_WRITES_PER_MINUTE": "-1"}, "RUNKEYS_GITHUB_WRITES_PER_MINUTE"),
        ({"RUNKEYS_GITHUB_TIME_FACTOR": "0"}, "RUNKEYS_GITHUB_TIME_FACTOR"),
        ({"RUNKEYS_GITHUB_TIME_FACTOR": "inf"}, "RUNKEYS_GITHUB_TIME_FACTOR"),
        ({"RUNKEYS_GITHUB_TIME_FACTOR": "fast"}, "RUNKEYS_GITHUB_TIME_FACTOR"),
        ({"RUNKEYS_LOG_LEVEL": "chatty"}, "RUNKEYS_LOG_LEVEL"),
        ({"RUNKEYS_LOG_SCAN": "yes"}, "RUNKEYS_LOG_SCAN"),
        ({"RUNKEYS_LOG_SCAN_MAX_BYTES": "1023"}, "RUNKEYS_LOG_SCAN_MAX_BYTES"),
        ({"RUNKEYS_LOG_SCAN_MAX_BYTES": "50MB"}, "RUNKEYS_LOG_SCAN_MAX_BYTES"),
        ({"RUNKEYS_LOG_SCAN_ATTEMPTS": "0"}, "RUNKEYS_LOG_SCAN_ATTEMPTS"),
        ({"RUNKEYS_DELETE_LEAKED_LOGS": "truee"}, "RUNKEYS_DELETE_LEAKED_LOGS"),
    ],
)
def test_a_bad_setting_stops_start_up_and_is_named(
    changes: dict[str, str | None], setting: str
) -> None:
    environ = {**VALID}
    for key, value in changes.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    with pytest.raises(ConfigError) as caught:
        create_app(environ)
    assert caught.value.setting == setting
    assert caught.value.explain().startswith(setting)
    assert "AAAA" not in caught.value.explain()  # a key, even a broken one, is never quoted


def test_the_commands_need_only_their_part(tmp_path: Path) -> None:
    ledger_only = ServiceConfig.for_ledger(
        {"RUNKEYS_DATABASE_URL": f"sqlite:///{tmp_path}/l.sqlite3"}
    )
    assert ledger_only.github is None
    with pytest.raises(ConfigError, match="RUNKEYS_APP_ID"):
        ServiceConfig.for_worker({})
    worker = ServiceConfig.for_worker({"RUNKEYS_APP_ID": "1", "RUNKEYS_PRIVATE_KEY": PEM})
    assert worker.webhook_secret == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ("127.0.0.1:9090", ("127.0.0.1", 9090)),
        (" 0.0.0.0:9090 ", ("0.0.0.0", 9090)),
        ("[::1]:9090", ("::1", 9090)),
        ("metrics.internal:1", ("metrics.internal", 1)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_metrics_bind_is_host_and_port(value: str, expected: tuple[str, int] | None) -> None:
    assert ServiceConfig.from_env({**VALID, "RUNKEYS_METRICS_BIND": value}).metrics_bind == (
        expected
    )


@pytest.mark.parametrize(
    "value",
    [
        "9090",  # a port alone
        ":9090",
        "127.0.0.1:",
        "127.0.0.1:0",  # any free port: Prometheus could not find it
        "127.0.0.1:65536",
        "localhost:http",
        "127.0.0.1:\uff19\uff10\uff19\uff10",  # digits, but fullwidth ones
        "::1:9090",  # IPv6 without brackets
        "[127.0.0.1]:9090",
        "256.0.0.1:9090",  # one past an IPv4 address, not a host name
        "-metrics:9090",
        "unix:/run/metrics.sock",
        "http://127.0.0.1:9090",
    ],
)
def test_a_bad_metrics_bind_stops_start_up_and_is_named(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app({**VALID, "RUNKEYS_METRICS_BIND": value})
    assert caught.value.setting == "RUNKEYS_METRICS_BIND"
    assert f"{value!r} is not HOST:PORT" in caught.value.explain()


def test_the_log_scan_settings_are_read() -> None:
    environ = {
        **VALID,
        "RUNKEYS_LOG_SCAN": "false",
        "RUNKEYS_LOG_SCAN_MAX_BYTES": "2048",
        "RUNKEYS_DELETE_LEAKED_LOGS": "TRUE",
        "RUNKEYS_LOG_SCAN_ATTEMPTS": "3",
    }
    settings = ServiceConfig.from_env(environ).log_scan
    assert (settings.enabled, settings.max_bytes) == (False, 2048)
    assert (settings.delete_leaked, settings.give_up_after) == (True, 3)
    defaults = ServiceConfig.from_env(VALID).log_scan
    assert (defaults.enabled, defaults.delete_leaked) == (True, False)
    assert defaults.max_bytes == 100 * 1024 * 1024
