"""Fixtures of the service's tests (the Flask tutorial's `app` and `client`, on both engines).

`database_url` is parametrized: every test that uses the ledger runs on SQLite (a file) and on
PostgreSQL (a database made for the test and dropped after it); `RUNKEYS_TEST_LEDGERS=sqlite`
narrows that to the ones named (`make mutate` runs the suite once per mutant). GitHub is the
sandbox, over real HTTP; its OIDC issuer signs the jobs' tokens.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url

from handler.app import create_app
from handler.ledger import Ledger, tables
from runkeys.leases import LeaseRequest
from runkeys_sandbox.launch import ThreadServer
from runkeys_sandbox.server import RunClaims
from runkeys_sandbox.server.sandbox import Sandbox
from runkeys_sandbox.server.state import App, Installation, Repository
from tests.service.kit import AUDIENCE, HTTP_PARAMS, Clock, TokenIssuer, lease
from tests.services import need, unique


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database; dropped afterwards."""
    admin = need("postgres")
    name = unique("rk_ledger")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_ledger() -> Iterator[str]:
    """One migrated PostgreSQL ledger for the session, emptied before each test that uses it
    (creating a database per test would cost more than the tests themselves)."""
    with postgres_database() as url:
        Ledger.open(url).close()
        yield url


def empty(url: str) -> None:
    """Every table but the migrations' record: a table added later is emptied too."""
    names = [t.name for t in tables.metadata.sorted_tables if t is not tables.schema_migrations]
    ledger = Ledger.open(url, migrate_schema=False)
    with ledger.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(names)} RESTART IDENTITY")
    ledger.close()


LEDGERS = ("sqlite", "postgres")


def _ledgers() -> list[str]:
    """The ledgers `database_url` runs on: all, or those `RUNKEYS_TEST_LEDGERS` names."""
    named = os.environ.get("RUNKEYS_TEST_LEDGERS", "")
    chosen = [name.strip() for name in named.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(LEDGERS))
    if unknown:
        raise pytest.UsageError(f"RUNKEYS_TEST_LEDGERS: unknown ledger {unknown}, not {LEDGERS}")
    return chosen or list(LEDGERS)


@pytest.fixture(params=_ledgers())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        return
    url: str = request.getfixturevalue("postgres_ledger")
    empty(url)
    yield url


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    opened = Ledger.open(database_url)
    yield opened
    opened.close()


# The connections the tests' services hold to the databases on localhost, by name (`narrow_…`:
# the same servers with an allow list).
DATABASES = {
    "ci_db": "postgres",
    "ci_my": "mysql",
    "ci_cache": "redis",
    "narrow_db": "postgres",
    "narrow_my": "mysql",
    "narrow_cache": "redis",
}


@dataclass
class GitHub:
    """The sandbox with one App installed on one repository (and a second, foreign one)."""

    sandbox: Sandbox
    app: App
    repo: Repository
    installation: Installation
    other_repo: Repository
    other_installation: Installation

    def claims(
        self, run_id: int | None = None, *, repo: Repository | None = None, **fields: Any
    ) -> RunClaims:
        """The claims of a job of a run in the sandbox (made if needed); `fields` override."""
        repo = repo or self.repo
        if run_id is None:
            run_id = self.sandbox.add_workflow_run(repo).id
        elif run_id not in repo.runs:
            self.sandbox.add_workflow_run(repo, run_id=run_id)
        environment = fields.pop("environment", None)
        claims = self.sandbox.run_claims(repo, run_id, environment=environment)
        return replace(claims, **fields)

    def lease(self, **fields: Any) -> LeaseRequest:
        """A lease whose secret is in this test's repository (unless `repository` says else),
        minted through the database connection it names (`ci_db`, `ci_my`, `ci_cache`: the
        ones on localhost) unless `connection_url` says which."""
        fields.setdefault("repository", self.repo.full_name)
        database = DATABASES.get(str(fields.get("connection")))
        if database is not None:
            fields.setdefault("connection_url", need(database))
        return lease(**fields)

    def http_leases(self, references: list[str], issuer_url: str) -> list[LeaseRequest]:
        """One `http` lease (no secret) per token the test issuer minted, at connection ISSUER."""
        return [
            self.lease(
                key_name=f"KEY_{i}",
                provider="http",
                connection="issuer",
                connection_url=issuer_url,
                params=HTTP_PARAMS,
                reference=reference,
                secret=False,
            )
            for i, reference in enumerate(references)
        ]

    def token(self, claims: RunClaims, **overrides: Any) -> str:
        return self.sandbox.oidc_token(claims, AUDIENCE, **overrides)

    def auth(self, claims: RunClaims, **overrides: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(claims, **overrides)}"}


@pytest.fixture(scope="session")
def sandbox() -> Iterator[tuple[Sandbox, App]]:
    """One sandbox and App for the session (RSA keys take a while to make); each test gets
    repositories and installations of its own."""
    with Sandbox() as started:
        yield started, started.add_app(webhook_secret="It's a Secret to Everybody")


@pytest.fixture
def github(sandbox: tuple[Sandbox, App]) -> GitHub:
    started, app = sandbox
    owner = unique("octo").replace("_", "-")
    repo = started.add_repository(f"{owner}/app")
    other = started.add_repository(f"{unique('other').replace('_', '-')}/lib")
    started.clear_faults()
    return GitHub(
        sandbox=started,
        app=app,
        repo=repo,
        installation=started.install(app, [repo]),
        other_repo=other,
        other_installation=started.install(app, [other]),
    )


@pytest.fixture
def environ(github: GitHub, database_url: str) -> dict[str, str]:
    """A complete, valid configuration, as the environment would give it."""
    return make_environ(github.sandbox, github.app, database_url)


def make_environ(sandbox: Sandbox, app: App, database_url: str) -> dict[str, str]:
    return {
        "RUNKEYS_WEBHOOK_SECRET": app.webhook_secret,
        "RUNKEYS_APP_ID": str(app.id),
        "RUNKEYS_PRIVATE_KEY": app.private_key_pem,
        "RUNKEYS_DATABASE_URL": database_url,
        "RUNKEYS_OIDC_ISSUER": sandbox.oidc_issuer_url,
        "RUNKEYS_OIDC_AUDIENCE": AUDIENCE,
        "GITHUB_API_URL": sandbox.url,
        "RUNKEYS_WORKER": "external",  # tests run the worker themselves
        "RUNKEYS_GITHUB_WRITES_PER_MINUTE": "100000",
    }


@pytest.fixture
def env(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """`environ` set in this process's environment, as the operator's commands read it."""
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    return environ


@pytest.fixture
def issuer() -> Iterator[tuple[TokenIssuer, str]]:
    """The `http` provider's issuer on loopback (connection `issuer`): its tokens, its URL."""
    tokens = TokenIssuer()
    server = ThreadServer(tokens)
    yield tokens, server.url
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(environ: dict[str, str], clock: Clock) -> Iterator[Flask]:
    made = create_app(environ, clock=clock)
    yield made
    made.extensions["runkeys"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def served(app: Flask, github: GitHub) -> Iterator[str]:
    """The service's app on a loopback port, and the stand-in delivering to its webhook."""
    server = ThreadServer(app)
    github.sandbox.webhook_url = f"{server.url}/webhook"
    try:
        yield server.url
    finally:
        github.sandbox.webhook_url = None
        server.stop()
