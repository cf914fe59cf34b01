"""A run of repository A, with a real OIDC token, registers leases whose parameters grant what
no test key should have, or what the service's own connection does not allow: each is refused
(422 `invalid_params`) and nothing is written. The service holds its connections with an allow
list, and judges a lease by its own connection's list, whatever the action's connection said."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from handler.app import create_app
from handler.ledger.leases import get
from runkeys import labels
from runkeys.leases import LeaseRequest
from tests.service.attack_kit import ledger, register
from tests.service.conftest import GitHub, make_environ
from tests.service.kit import Clock, js
from tests.services import need

ALLOWED_ROLE, ALLOWED_DATABASE = "app_ro", "app"
Params = dict[str, Any]


@pytest.fixture
def service(github: GitHub, tmp_path: Path, clock: Clock) -> Iterator[Flask]:
    environ = make_environ(github.sandbox, github.app, f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    environ |= {
        "RUNKEYS_CONNECTION_CI_DB": need("postgres"),
        "RUNKEYS_CONNECTION_CI_MY": need("mysql"),
        "RUNKEYS_CONNECTION_CI_CACHE": need("redis"),
        # The same servers, narrowed.
        "RUNKEYS_CONNECTION_NARROW_DB": f"{need('postgres')}?runkeys_grants={ALLOWED_ROLE}",
        "RUNKEYS_CONNECTION_NARROW_MY": f"{need('mysql')}?runkeys_grants={ALLOWED_DATABASE}",
        "RUNKEYS_CONNECTION_NARROW_CACHE": f"{need('redis')}?runkeys_grants=@read,get",
    }
    made = create_app(environ, clock=clock)
    yield made
    made.extensions["runkeys"].close()


@pytest.fixture
def client(service: Flask) -> FlaskClient:
    return service.test_client()


def lease_of(
    github: GitHub, provider: str, connection: str, params: dict[str, Any]
) -> LeaseRequest:
    """A lease as the action would send it for a key minted under its own label."""
    lease_id = uuid.uuid4().hex
    label = labels.label(lease_id, "DATABASE_URL")
    return github.lease(
        key_name="DATABASE_URL",
        provider=provider,
        connection=connection,
        params=params,
        reference=f"{label}@%" if provider == "mysql" else label,
        secret=False,
        lease_id=lease_id,
    )


def refused(client: FlaskClient, github: GitHub, service: Flask, lease: LeaseRequest) -> str:
    response = register(client, github, lease)
    assert response.status_code == 422, response.json
    assert js(response)["error"] == "invalid_params"
    with ledger(service).begin() as conn:
        assert get(conn, lease.id) is None
    message: str = js(response)["message"]
    return message


@pytest.mark.parametrize(
    "case",
    [
        ("postgres", "ci_db", {"grant": ["pg_execute_server_program"]}, "params.grant"),
        ("postgres", "ci_db", {"grant": ["app_ro", "pg_read_server_files"]}, "params.grant"),
        ("postgres", "ci_db", {"grant": ["PG_WRITE_SERVER_FILES"]}, "params.grant"),
        # The service's own connection logs in as `postgres`.
        ("postgres", "ci_db", {"grant": ["postgres"]}, "params.grant"),
        (
            "mysql",
            "ci_my",
            {"grant": [{"database": "mysql", "table": "user", "privileges": ["SELECT"]}]},
            "params.grant[0].database",
        ),
        (
            "mysql",
            "ci_my",
            {"grant": [{"database": "Performance_Schema", "privileges": ["SELECT"]}]},
            "params.grant[0].database",
        ),
        (
            "redis",
            "ci_cache",
            {"categories": ["scripting"], "commands": ["function|delete"]},
            "params.commands",
        ),
        ("redis", "ci_cache", {"commands": ["scan"]}, "params.commands"),
    ],
    ids=lambda case: f"{case[0]}-{case[2]}",
)
def test_a_grant_no_key_should_have_is_not_registered(
    client: FlaskClient, github: GitHub, service: Flask, case: tuple[str, str, Params, str]
) -> None:
    provider, connection, params, field = case
    lease = lease_of(github, provider, connection, params)
    message = refused(client, github, service, lease)
    assert message.startswith(f"lease {lease.id} (DATABASE_URL): {field}: ")


@pytest.mark.parametrize(
    "case",
    [
        ("postgres", "narrow_db", {"grant": [ALLOWED_ROLE, "app_owner"]}, "'app_owner'"),
        ("postgres", "narrow_db", {"grant": [f"{ALLOWED_ROLE}2"]}, f"'{ALLOWED_ROLE}2'"),
        ("postgres", "narrow_db", {"grant": ["App_ro"]}, "'App_ro'"),
        (
            "mysql",
            "narrow_my",
            {"grant": [{"database": f"{ALLOWED_DATABASE}_x", "privileges": ["SELECT"]}]},
            f"'{ALLOWED_DATABASE}_x'",
        ),
        ("redis", "narrow_cache", {"categories": ["read", "write"]}, "'@write'"),
        ("redis", "narrow_cache", {"commands": ["get", "set"]}, "'set'"),
    ],
    ids=lambda case: f"{case[1]}-{case[2]}",
)
def test_a_grant_outside_the_services_allow_list_is_not_registered(
    client: FlaskClient, github: GitHub, service: Flask, case: tuple[str, str, Params, str]
) -> None:
    provider, connection, params, outside = case
    lease = lease_of(github, provider, connection, params)
    message = refused(client, github, service, lease)
    assert f"{outside} is not among the" in message
    assert f"RUNKEYS_CONNECTION_{connection.upper()} allows" in message


@pytest.mark.parametrize(
    "case",
    [
        ("postgres", "narrow_db", {"grant": [ALLOWED_ROLE]}),
        ("postgres", "narrow_db", {}),
        ("postgres", "ci_db", {"grant": ["pgapp", "app_owner"]}),
        (
            "mysql",
            "narrow_my",
            {"grant": [{"database": ALLOWED_DATABASE, "privileges": ["SELECT"]}]},
        ),
        ("mysql", "ci_my", {"grant": [{"database": "mysql_app", "privileges": ["SELECT"]}]}),
        ("redis", "ci_cache", {"categories": ["scripting"], "commands": ["eval", "-scan"]}),
        ("redis", "narrow_cache", {"categories": ["read"], "commands": ["get", "-del"]}),
    ],
    ids=lambda case: f"{case[1]}-{case[2]}",
)
def test_what_is_allowed_is_registered(
    client: FlaskClient, github: GitHub, service: Flask, case: tuple[str, str, Params]
) -> None:
    lease = lease_of(github, *case)
    response = register(client, github, lease)
    assert response.status_code == 201, response.json
    with ledger(service).begin() as conn:
        assert get(conn, lease.id) is not None
