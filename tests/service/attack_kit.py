"""What the attack tests share: the service holding an admin connection to each database (as a
shared deployment would), a way to see and make accounts there with that admin, and the calls
repository A's workflow makes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import redis
from flask import Flask
from flask.testing import FlaskClient
from psycopg import sql

from handler.app import create_app
from handler.ledger import Ledger
from handler.ledger.queue import LeasesById, queue
from handler.worker import RevocationWorker
from runkeys.leases import LeaseRequest
from tests.providers.harness_mysql import connect_url
from tests.service.conftest import GitHub, make_environ
from tests.service.kit import Clock, assert_documented, body
from tests.services import need


def connections() -> dict[str, str]:
    """The admin connections the service holds (and an action minting with them would)."""
    return {
        "RUNKEYS_CONNECTION_CI_DB": need("postgres"),
        "RUNKEYS_CONNECTION_CI_MY": need("mysql"),
        "RUNKEYS_CONNECTION_CI_CACHE": need("redis"),
    }


@contextmanager
def armed_service(github: GitHub, tmp_path: Path, clock: Clock) -> Iterator[Flask]:
    """The service holding an admin connection to each database, as a shared one would."""
    environ = make_environ(github.sandbox, github.app, f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    made = create_app(environ | connections(), clock=clock)
    yield made
    made.extensions["runkeys"].close()


def ledger(service: Flask) -> Ledger:
    found: Ledger = service.extensions["runkeys"].ledger
    return found


def register(client: FlaskClient, github: GitHub, *leases: LeaseRequest, repo: Any = None) -> Any:
    """`POST /v1/leases` with a fresh token of a run of `repo` (A unless said)."""
    claims = github.claims(repo=repo or github.repo)
    response = client.post("/v1/leases", json=body(*leases), headers=github.auth(claims))
    assert_documented("POST", "/v1/leases", response.status_code, response.json)
    return response


def run_worker(service: Flask, *lease_ids: str) -> None:
    """The run is over: its leases are queued and the worker retires what it can."""
    running = service.extensions["runkeys"]
    with running.ledger.begin() as conn:
        queue(
            conn, LeasesById(lease_ids), actor="test", reason="run completed", now=running.clock()
        )
    assert RevocationWorker(running).drain() == len(lease_ids)


def _postgres(statement: str | sql.Composed, *args: Any) -> list[Any]:
    with psycopg.connect(need("postgres"), autocommit=True) as conn:
        cursor = conn.execute(statement, args)
        return cursor.fetchall() if cursor.description else []


def _mysql(statement: str, *args: Any) -> list[Any]:
    with connect_url(need("mysql")) as conn, conn.cursor() as cursor:
        cursor.execute(statement, args)
        return list(cursor.fetchall())


def _redis(*command: Any) -> Any:
    admin = redis.Redis.from_url(need("redis"))
    try:
        return admin.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        admin.close()


@dataclass(frozen=True)
class Backend:
    """A database the service holds an admin connection to, seen with that admin account."""

    provider: str
    connection: str  # as a spec names it
    create: Callable[[str], object]  # an account of the application's, not runkeys'
    exists: Callable[[str], bool]
    drop: Callable[[str], object]
    reference: Callable[[str], str]  # how the provider's reference names an account


BACKENDS = {
    "postgres": Backend(
        "postgres",
        "ci_db",
        lambda name: _postgres(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name))),
        lambda name: bool(_postgres("SELECT 1 FROM pg_roles WHERE rolname = %s", name)),
        lambda name: _postgres(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name))),
        lambda name: name,
    ),
    "mysql": Backend(
        "mysql",
        "ci_my",
        lambda name: _mysql("CREATE USER %s@'%%' IDENTIFIED BY 'app-Secr3t'", name),
        lambda name: bool(_mysql("SELECT 1 FROM mysql.user WHERE User = %s", name)),
        lambda name: _mysql("DROP USER IF EXISTS %s@'%%'", name),
        lambda name: f"{name}@%",
    ),
    "redis": Backend(
        "redis",
        "ci_cache",
        lambda name: _redis("ACL", "SETUSER", name, "on", ">app-Secr3t", "~app:*", "+get"),
        lambda name: _redis("ACL", "GETUSER", name) is not None,
        lambda name: _redis("ACL", "DELUSER", name),
        lambda name: name,
    ),
}
