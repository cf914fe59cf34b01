"""A key is revoked only on the server it was minted on.

The service revokes through its own connection of the lease's name. If that connection reaches
another server, the key is "not found" there — which a revoke counts as done — while it lives on
where it was minted. So a lease records its connection's target (scheme, host, port, database;
no credentials), registration refuses a lease whose target the service's connection does not
reach, and a revoke through a connection whose target differs fails the lease instead.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from msgspec.structs import replace

from handler.app import create_app
from runkeys.connections import Connection, Target, target_of
from runkeys.errors import ConfigError
from runkeys.leases import LeaseState
from runkeys.providers import MintRequest
from runkeys.providers.redis_acl import RedisAclProvider
from runkeys_sandbox.launch import free_port
from tests.service.attack_kit import armed_service, ledger, register, run_worker
from tests.service.conftest import GitHub, make_environ
from tests.service.kit import Clock, identity, js, put, stored
from tests.service.served import wait_for
from tests.services import need, skip_or_fail

# --- what a target is ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("postgresql://admin:pw@DB.internal/ci", Target("postgresql", "db.internal", 5432, "ci")),
        ("postgres://a:other@db.internal:5432/ci", Target("postgresql", "db.internal", 5432, "ci")),
        ("host=db.internal port=5433 dbname=ci", Target("postgresql", "db.internal", 5433, "ci")),
        ("postgresql://a:b@/ci?host=/run/pg", Target("postgresql", "/run/pg", 5432, "ci")),
        ("mysql://root:pw@127.0.0.1/test", Target("mysql", "127.0.0.1", 3306, "test")),
        ("mariadb://root:pw@[::1]:3307/test", Target("mysql", "::1", 3307, "test")),
        ("redis://:pw@cache:6379", Target("redis", "cache", 6379, "0")),
        ("rediss://u:pw@cache:6380/2", Target("redis", "cache", 6380, "2")),
        ("https://ci:token@issuer.example/api/", Target("https", "issuer.example", 443, "api")),
    ],
)  # fmt: skip
def test_a_target_is_where_a_connection_reaches_without_how_it_logs_in(
    url: str, target: Target
) -> None:
    assert target_of(Connection("CI", url)) == target


def test_a_fingerprint_is_the_targets_digest_and_names_no_credential() -> None:
    found = target_of(Connection("CI", "postgresql://admin:s3cret@db.internal/ci"))
    expected = hashlib.sha256(b"postgresql://db.internal:5432/ci").hexdigest()
    assert found.fingerprint() == expected
    assert "s3cret" not in repr(found)
    assert "admin" not in repr(found)


@pytest.mark.parametrize(
    "other",
    [
        "postgresql://admin:pw@db.internal:5433/ci",  # another port
        "postgresql://admin:pw@db.internal/ci2",  # another database
        "postgresql://admin:pw@db2.internal/ci",  # another host
        "mysql://admin:pw@db.internal:5432/ci",  # another kind of server
    ],
)
def test_targets_differ_by_scheme_host_port_or_database(other: str) -> None:
    base = target_of(Connection("CI", "postgresql://admin:pw@db.internal/ci")).fingerprint()
    assert target_of(Connection("CI", other)).fingerprint() != base


def test_an_unreadable_connection_says_so_without_quoting_it() -> None:
    with pytest.raises(ConfigError) as refused:
        target_of(Connection("CI_DB", "postgresql://admin:p@ss w0rd@db:54x2/ci"))
    assert "p@ss" not in refused.value.explain()
    assert "w0rd" not in refused.value.explain()
    assert "RUNKEYS_CONNECTION_CI_DB" in str(refused.value)


# --- registration ------------------------------------------------------------------------------


@pytest.fixture
def service(github: GitHub, tmp_path: Path, clock: Clock) -> Iterator[Flask]:
    with armed_service(github, tmp_path, clock) as made:
        yield made


@pytest.fixture
def client(service: Flask) -> FlaskClient:
    return service.test_client()


def _redis_url(port: int | None = None, database: int | None = None, password: str = "") -> str:
    """The Redis the service's CI_CACHE reaches, or another port, database or password."""
    parts = urllib.parse.urlsplit(need("redis"))
    netloc = f"{parts.hostname}:{port or parts.port or 6379}"
    if password:
        netloc = f":{password}@{netloc}"
    path = parts.path if database is None else f"/{database}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, "", ""))


@pytest.mark.parametrize(
    ("minted_on", "status"),
    [
        (lambda: _redis_url(port=6380), 422),
        (lambda: _redis_url(database=3), 422),
        (lambda: _redis_url().replace("127.0.0.1", "localhost"), 422),
        (lambda: _redis_url(password="the-actions-own"), 201),  # credentials are not the target
        (lambda: _redis_url(database=0), 201),
        (lambda: _redis_url(database=0).removesuffix("/0"), 201),  # 0 is Redis's default
    ],
    ids=["another port", "another database", "another host name", "other password", "0", "none"],
)
def test_a_lease_minted_where_the_service_cannot_reach_is_refused(
    client: FlaskClient, github: GitHub, minted_on: Any, status: int
) -> None:
    lease = github.lease(
        key_name="CACHE_URL",
        provider="redis",
        connection="ci_cache",
        connection_url=minted_on(),
        reference="",  # set below: what the provider mints under the label
        secret=False,
        params={"keys": ["ci:*"]},
    )
    lease = replace(lease, reference=lease.label)
    response = register(client, github, lease)
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 422:
        assert js(response)["error"] == "connection_mismatch"
        assert "RUNKEYS_CONNECTION_CI_CACHE reaches another server" in js(response)["message"]


def test_a_lease_that_does_not_say_where_it_was_minted_is_refused(
    client: FlaskClient, github: GitHub
) -> None:
    lease = github.lease(
        key_name="CACHE_URL",
        provider="redis",
        connection="ci_cache",
        secret=False,
        params={"keys": ["ci:*"]},
    )
    lease = replace(lease, reference=lease.label, connection_target=None)
    response = register(client, github, lease)
    assert (response.status_code, js(response)["error"]) == (422, "connection_mismatch")


def test_a_connection_the_service_cannot_read_is_its_own_misconfiguration(
    github: GitHub, tmp_path: Path, clock: Clock
) -> None:
    """The operator gave the service's RUNKEYS_CONNECTION_CI_BAD a scheme runkeys does not
    know: the action's lease is fine, the service is not. 503 (the action retries), not 422
    ("your lease is wrong"), and the message names the variable, quoting nothing of it."""
    environ = make_environ(github.sandbox, github.app, f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    broken = "memcached://ci:s3cr3t-pw@cache:11211"
    service = create_app({**environ, "RUNKEYS_CONNECTION_CI_BAD": broken}, clock=clock)
    try:
        lease = github.lease(
            key_name="CACHE_URL",
            provider="redis",
            connection="ci_bad",
            connection_url=need("redis"),
            secret=False,
            params={"keys": ["ci:*"]},
        )
        lease = replace(lease, reference=lease.label)
        response = register(service.test_client(), github, lease)
        assert (response.status_code, js(response)) == (
            503,
            {
                "error": "service_misconfigured",
                "message": f"lease {lease.id} (CACHE_URL): the service's "
                "RUNKEYS_CONNECTION_CI_BAD: has a URL scheme runkeys does not know",
            },
        )
        assert "s3cr3t" not in response.get_data(as_text=True)
    finally:
        service.extensions["runkeys"].close()


# --- revoking ------------------------------------------------------------------------------------


@pytest.fixture
def second_redis(tmp_path: Path) -> Iterator[str]:
    """Another Redis server on this host, as a misconfigured connection would reach."""
    binary = shutil.which("redis-server")
    if binary is None:
        skip_or_fail("redis-server is not installed")
        raise AssertionError  # unreachable: skip_or_fail raises
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(url).ping())
        except redis.ConnectionError:
            assert process.poll() is None, "redis-server exited"
            return False

    try:
        wait_for(answers, what=f"redis-server on port {port}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_revoke_through_a_connection_to_another_server_fails_and_the_key_lives_on(
    github: GitHub, tmp_path: Path, clock: Clock, second_redis: str
) -> None:
    """The key was minted on the Redis the action reached; the service's CI_CACHE now reaches
    another Redis, where the user is "not found". That is not a revoke: the lease fails, and
    says why; the user is still there to be revoked once the connection is fixed."""
    minted_on = Connection("CI_CACHE", need("redis"))
    lease = github.lease(
        key_name="CACHE_URL",
        provider="redis",
        connection="ci_cache",
        connection_url=minted_on.url,
        reference="",
        secret=False,
        params={"keys": ["ci:*"]},
    )
    lease = replace(lease, reference=lease.label)
    provider = RedisAclProvider()
    provider.mint(
        MintRequest(
            key_name="CACHE_URL",
            params=lease.params,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
            label=lease.label,
            connection=minted_on,
        )
    )
    admin = redis.Redis.from_url(need("redis"))
    try:
        environ = make_environ(github.sandbox, github.app, f"sqlite:///{tmp_path / 'l.sqlite3'}")
        app = create_app({**environ, "RUNKEYS_CONNECTION_CI_CACHE": second_redis}, clock=clock)
        try:
            put(ledger(app), identity(github.repo.full_name, github.repo.id), lease)
            run_worker(app, lease.id)
            failed = stored(ledger(app), lease.id)
        finally:
            app.extensions["runkeys"].close()
        assert failed.state is LeaseState.FAILED
        assert "reaches another server or database than the one this key was minted on" in (
            failed.last_error or ""
        )
        assert admin.acl_getuser(lease.label) is not None
    finally:
        admin.acl_deluser(lease.label)
