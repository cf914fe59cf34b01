"""The real PostgreSQL, MariaDB and Redis on localhost that tests use.

A test that needs one calls `need(...)`: when the service is absent it skips with the reason, or
fails when `RUNKEYS_REQUIRE_SERVICES=1` (CI sets it) so a missing server can never pass silently.
Tests create uniquely named databases, roles and users and drop them afterwards.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "RUNKEYS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL_ADMIN_URL = os.environ.get("RUNKEYS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
REDIS_ADMIN_URL = os.environ.get("RUNKEYS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

_PORTS = {"postgres": (POSTGRES_ADMIN_URL, 5432), "mysql": (MYSQL_ADMIN_URL, 3306)}
_PORTS["redis"] = (REDIS_ADMIN_URL, 6379)


def required() -> bool:
    return os.environ.get("RUNKEYS_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    if required():
        pytest.fail(f"{reason} (RUNKEYS_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def _reachable(url: str, default_port: int) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1
        ):
            return True
    except OSError:
        return False


def need(service: str) -> str:
    """The admin URL of `service` ("postgres", "mysql" or "redis"), or skip/fail."""
    url, port = _PORTS[service]
    if not _reachable(url, port):
        skip_or_fail(f"{service} is not reachable at {url}")
    return url


def unique(prefix: str = "rk_test") -> str:
    """A name no other test (or parallel run) uses: lowercase, a valid identifier."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
