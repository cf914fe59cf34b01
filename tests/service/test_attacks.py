"""Repository A's workflow tries to have the service destroy credentials its run never minted.

Every attack is made as a real one would be: a real OIDC token from the sandbox's issuer for a
run of A, the real service app, and real credentials that must survive — a PostgreSQL role, a
MariaDB user and a Redis ACL user runkeys did not make, another repository's runkeys role, a
deploy key of another repository. Each registration is refused; where a lease gets into the
ledger anyway (a row written by hand, or by an older version), the worker runs and the
providers refuse to touch anything not theirs. Afterwards each credential is still there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from psycopg import sql
from sqlalchemy import update

from handler.app import create_app
from handler.ledger import Ledger, tables
from handler.ledger.leases import LeaseFilter, find, get
from handler.ledger.queue import LeasesById, queue
from handler.worker import RevocationWorker
from runkeys import labels
from runkeys.connections import Connection
from runkeys.github.session import AppCredentials, GitHubConfig, GitHubSession
from runkeys.leases import LeaseRequest, LeaseState
from runkeys.providers import MintRequest
from runkeys.providers.postgres import PostgresProvider
from runkeys.sandbox.state import Repository
from tests.action.harness import Step
from tests.providers.harness_mysql import connect_url
from tests.service import kit
from tests.service.conftest import GitHub, make_environ
from tests.service.kit import (
    AUDIENCE,
    Clock,
    WsgiServer,
    assert_documented,
    body,
    identity,
    js,
    put,
    stored,
)
from tests.services import need, unique

# --- the world: the service with its connections, and accounts runkeys did not make -------------


@pytest.fixture
def service(github: GitHub, tmp_path: Path, clock: Clock) -> Iterator[Flask]:
    """The service holding an admin connection to each database, as a shared one would."""
    environ = make_environ(github.sandbox, github.app, f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    environ |= {
        "RUNKEYS_CONNECTION_CI_DB": need("postgres"),
        "RUNKEYS_CONNECTION_CI_MY": need("mysql"),
        "RUNKEYS_CONNECTION_CI_CACHE": need("redis"),
    }
    made = create_app(environ, clock=clock)
    yield made
    made.extensions["runkeys"].close()


@pytest.fixture
def client(service: Flask) -> FlaskClient:
    return service.test_client()


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


@pytest.fixture(params=sorted(BACKENDS))
def account(request: pytest.FixtureRequest) -> Iterator[tuple[Backend, str]]:
    """An application's own account at each backend (`app_owner_…`), not made by runkeys."""
    backend, name = BACKENDS[request.param], unique("app_owner")
    backend.create(name)
    try:
        yield backend, name
    finally:
        backend.drop(name)


def lease_naming(github: GitHub, backend: Backend, name: str) -> LeaseRequest:
    return github.lease(
        key_name="DATABASE_URL",
        provider=backend.provider,
        connection=backend.connection,
        reference=backend.reference(name),
        secret=False,
    )


# --- accounts runkeys did not make --------------------------------------------------------------


def test_an_account_runkeys_did_not_make_cannot_be_registered(
    client: FlaskClient, github: GitHub, service: Flask, account: tuple[Backend, str]
) -> None:
    backend, name = account
    attack = lease_naming(github, backend, name)
    response = register(client, github, attack)
    assert response.status_code == 422
    assert js(response)["error"] == "reference_mismatch"
    assert attack.label in js(response)["message"]  # it says what the lease could name
    with ledger(service).begin() as conn:
        assert get(conn, attack.id) is None
    assert backend.exists(name)


def test_a_forged_ledger_row_still_drops_nothing(
    github: GitHub, service: Flask, account: tuple[Backend, str]
) -> None:
    """A row as an older version wrote it (no label) names the account; the worker runs it and
    the provider refuses: the lease fails, loudly and not retried soon, and the account stays."""
    backend, name = account
    attack = lease_naming(github, backend, name)
    put(ledger(service), identity(github.repo.full_name, github.repo.id), attack)
    with ledger(service).begin() as conn:
        conn.execute(
            update(tables.leases).where(tables.leases.c.id == attack.id).values(label=None)
        )
    run_worker(service, attack.id)
    lease = stored(ledger(service), attack.id)
    assert lease.state is LeaseState.FAILED  # at once: a person must look at it
    assert lease.last_error is not None
    assert "refusing reference" in lease.last_error
    assert "not an account runkeys makes" in lease.last_error
    assert backend.exists(name)


@pytest.mark.parametrize("superuser", ["postgres", "root"])
def test_the_connections_own_superuser_cannot_be_named(
    client: FlaskClient, github: GitHub, superuser: str
) -> None:
    provider, connection = ("postgres", "ci_db") if superuser == "postgres" else ("mysql", "ci_my")
    reference = superuser if provider == "postgres" else f"{superuser}@localhost"
    attack = github.lease(
        provider=provider, connection=connection, reference=reference, secret=False
    )
    assert js(register(client, github, attack))["error"] == "reference_mismatch"


# --- another repository's runkeys credential ------------------------------------------------


@pytest.fixture
def role_of_b(github: GitHub, service: Flask) -> Iterator[LeaseRequest]:
    """Repository B's run minted a real PostgreSQL role and registered its lease."""
    minted_for = github.lease(
        key_name="DATABASE_URL", provider="postgres", connection="ci_db", secret=False
    )
    provider = PostgresProvider()
    connection = Connection("CI_DB", need("postgres"))
    minted = provider.mint(
        MintRequest(
            key_name="DATABASE_URL",
            params={},
            expires_at=minted_for.expires_at,
            label=minted_for.label,
            connection=connection,
        )
    )
    lease = replace(minted_for, reference=minted.reference)
    client = service.test_client()
    assert register(client, github, lease, repo=github.other_repo).status_code == 201
    try:
        yield lease
    finally:
        BACKENDS["postgres"].drop(lease.label)


def role_exists(name: str) -> bool:
    return BACKENDS["postgres"].exists(name)


def test_another_repositorys_runkeys_role_cannot_be_named(
    client: FlaskClient, github: GitHub, service: Flask, role_of_b: LeaseRequest
) -> None:
    assert role_exists(role_of_b.reference)
    # A new lease of A naming B's role: the label of A's lease is not B's.
    naming = github.lease(
        key_name="DATABASE_URL",
        provider="postgres",
        connection="ci_db",
        reference=role_of_b.reference,
        secret=False,
    )
    assert js(register(client, github, naming))["error"] == "reference_mismatch"
    # B's own lease, sent again by A: its id (and so its label) is B's.
    assert js(register(client, github, role_of_b))["error"] == "lease_conflict"
    # An id aimed at B's label: the label is not the id's characters but a digest of them.
    aimed = role_of_b.label.removeprefix(labels.PREFIX)[: labels.DIGEST_CHARS]
    aimed_lease = github.lease(
        key_name="DATABASE_URL",
        provider="postgres",
        connection="ci_db",
        reference=role_of_b.reference,
        secret=False,
        lease_id=aimed + "0" * 16,
    )
    assert aimed_lease.label != role_of_b.label
    assert js(register(client, github, aimed_lease))["error"] == "reference_mismatch"
    # A row naming B's role written into the ledger by hand, under A's run: the worker finds
    # that the reference is not what A's label makes, and leaves the role alone.
    forged = replace(naming, id=github.lease().id)
    put(ledger(service), identity(github.repo.full_name, github.repo.id), forged)
    run_worker(service, forged.id)
    failed = stored(ledger(service), forged.id)
    assert failed.state is LeaseState.FAILED
    assert f"for this lease's label {forged.label}" in (failed.last_error or "")
    # B's role and lease are untouched.
    assert role_exists(role_of_b.reference)
    lease = stored(ledger(service), role_of_b.id)
    assert (lease.repository_id, lease.state) == (github.other_repo.id, LeaseState.ACTIVE)


def test_a_label_already_leased_is_not_leased_again(
    client: FlaskClient, github: GitHub, service: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two lease ids whose digests agree in their first 64 bits (the hash is patched to stand
    for such a collision): the second lease would name the first one's credential, and is
    refused (409 label_taken) with nothing of its request written."""
    first = github.lease(key_name="API_TOKEN")
    taken = first.label
    real = labels.label
    monkeypatch.setattr(
        labels, "label", lambda lease_id, key: taken if key == "API_TOKEN" else real(lease_id, key)
    )
    assert register(client, github, first).status_code == 201
    second = github.lease(key_name="API_TOKEN", reference=f"random:{taken}", secret=False)
    other = github.lease(key_name="OTHER", secret=False)
    response = register(client, github, other, second, repo=github.other_repo)
    assert response.status_code == 409
    assert js(response)["error"] == "label_taken"
    with ledger(service).begin() as conn:
        assert get(conn, second.id) is None
        assert get(conn, other.id) is None  # the whole request was refused
    assert stored(ledger(service), first.id).repository_id == github.repo.id


# --- deploy keys ------------------------------------------------------------------------------


def add_deploy_key(github: GitHub, repo: Repository, title: str) -> int:
    """A deploy key as its owner added it (through the API, as the App)."""
    session = GitHubSession(
        GitHubConfig(
            api_url=github.sandbox.url,
            app=AppCredentials(str(github.app.id), github.app.private_key_pem),
        )
    )
    public = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return int(session.repository(repo.full_name).create_key(title, public.decode(), True).id)


def deploy_key_titles(github: GitHub, repo: Repository) -> list[str]:
    return [key["title"] for key in github.sandbox.deploy_keys(repo)]


def deploy_lease(github: GitHub, target: str, reference: str) -> LeaseRequest:
    return github.lease(
        key_name="FIXTURES_KEY",
        provider="deploy-key",
        params={"repository": target},
        reference=reference,
        secret=False,
    )


def test_a_deploy_key_of_another_account_cannot_be_registered(
    client: FlaskClient, github: GitHub
) -> None:
    victim = github.other_repo  # another owner; the App is installed there too
    key_id = add_deploy_key(github, victim, "production deploy")
    reference = f"{victim.full_name}:{key_id}"
    outside = deploy_lease(github, victim.full_name, reference)
    response = register(client, github, outside)
    assert (response.status_code, js(response)["error"]) == (422, "foreign_repository")
    # Naming A's repository in the params does not carry the reference along.
    disguised = deploy_lease(github, github.repo.full_name, reference)
    assert js(register(client, github, disguised))["error"] == "reference_mismatch"
    assert deploy_key_titles(github, victim) == ["production deploy"]


def test_a_repository_the_installation_does_not_reach_cannot_be_registered(
    client: FlaskClient, github: GitHub
) -> None:
    """Same account, but not in the installation the token's repository is in: the service
    could not revoke there, and the token's run has no business there."""
    sibling = github.sandbox.add_repository(f"{github.repo.owner}/{unique('fixtures')}")
    attack = deploy_lease(github, sibling.full_name, f"{sibling.full_name}:12345")
    response = register(client, github, attack)
    assert (response.status_code, js(response)["error"]) == (422, "foreign_repository")
    assert "cannot reach" in js(response)["message"]


def test_a_deploy_key_runkeys_did_not_make_is_never_deleted(
    client: FlaskClient, github: GitHub, service: Flask
) -> None:
    """A key id is GitHub's, so a lease naming a key of A's own repository is registered; when
    the run is over the worker reads the key's title, finds it is not the one runkeys gave this
    lease, and refuses for good. A forged row naming another account's key fares the same."""
    own_key = add_deploy_key(github, github.repo, "ci deploy")
    attack = deploy_lease(github, github.repo.full_name, f"{github.repo.full_name}:{own_key}")
    assert register(client, github, attack).status_code == 201
    victim = github.other_repo
    victim_key = add_deploy_key(github, victim, "production deploy")
    forged = deploy_lease(github, victim.full_name, f"{victim.full_name}:{victim_key}")
    put(ledger(service), identity(github.repo.full_name, github.repo.id), forged)
    run_worker(service, attack.id, forged.id)
    for lease_id in (attack.id, forged.id):
        lease = stored(ledger(service), lease_id)
        assert lease.state is LeaseState.FAILED
        assert lease.last_error is not None
        assert "refusing to delete deploy key" in lease.last_error
    assert deploy_key_titles(github, github.repo) == ["ci deploy"]
    assert deploy_key_titles(github, victim) == ["production deploy"]


def test_a_label_and_its_lease_id_agree_only_through_the_digest() -> None:
    """What an attacker who picks lease ids gets: 32 characters at most of [a-z0-9_], the same
    for the same id, never the id's own characters, and ids that differ in case or in the
    characters a label cannot hold still get labels of their own."""
    ids = ["0123456789abcdef0123", "0123456789ABCDEF0123", "0123456789abcdef-0123", "a" * 64]
    made = [labels.label(lease_id, "DATABASE_URL_OF_THE_PRIMARY") for lease_id in ids]
    assert len(set(made)) == len(ids)
    for label in made:
        assert len(label) <= labels.MAX_LENGTH
        assert labels.is_runkeys_name(label)
        assert "0123456789abcdef" not in label
    assert labels.label(ids[0], "DATABASE_URL_OF_THE_PRIMARY") == made[0]
    assert labels.label(ids[0], "key-with.odd chars").endswith("_key_with_odd")
    assert not labels.is_runkeys_name("postgres")
    assert not labels.is_runkeys_name("app_owner")
    assert not labels.is_runkeys_name("rk_" + "x" * 30)  # longer than MySQL allows


def test_an_old_actions_label_is_refused(client: FlaskClient, github: GitHub) -> None:
    """The label earlier actions made from the id's first 8 characters names nothing now."""
    lease = github.lease(secret=False)
    old = f"rk_{lease.id[:8]}_{lease.key_name.lower()}"
    stale = github.lease(secret=False, lease_id=lease.id, reference=f"random:{old}")
    assert js(register(client, github, stale))["error"] == "reference_mismatch"


# --- and what runkeys is for still works ------------------------------------------------------

E2E_KEYS = (
    "DATABASE_URL: {provider: postgres, connection: ci_db, ttl: 30m}\n"
    "MYSQL_URL: {provider: mysql, connection: ci_my, ttl: 30m}\n"
    "CACHE_URL: {provider: redis, connection: ci_cache, keys: ['e2e:*'], categories: [read]}\n"
    "API_TOKEN: {provider: random, ttl: 30m}\n"
)


def test_the_action_issues_through_the_service_and_the_run_retires_it(
    github: GitHub, service: Flask, tmp_path: Path
) -> None:
    """The action's entry point mints with the labels it registers, the service accepts each
    reference, and when the run completes the worker retires every credential."""
    claims = github.claims()
    server = WsgiServer(service)
    step = Step(tmp_path / "step", repository=github.repo.full_name, run_id=claims.run_id)
    step.base_env.update(github.sandbox.runner_oidc_env(claims))
    step.base_env["GITHUB_REPOSITORY_ID"] = str(github.repo.id)
    connections = {
        "RUNKEYS_CONNECTION_CI_DB": need("postgres"),
        "RUNKEYS_CONNECTION_CI_MY": need("mysql"),
        "RUNKEYS_CONNECTION_CI_CACHE": need("redis"),
    }
    minted: list[tuple[Backend, str]] = []
    try:
        run = step.run(
            {"keys": E2E_KEYS, "service-url": server.url, "audience": AUDIENCE},
            extra_env=connections,
        )
        assert run.returncode == 0, [*run.lines, run.stderr]
        with ledger(service).begin() as conn:
            leases = find(conn, LeaseFilter(repository=str(github.repo.id)))
        assert sorted(lease.key_name for lease in leases) == sorted(
            ["DATABASE_URL", "MYSQL_URL", "CACHE_URL", "API_TOKEN"]
        )
        for lease in leases:
            assert lease.label == labels.label(lease.id, lease.key_name)
            if lease.provider in BACKENDS:
                minted.append((BACKENDS[lease.provider], lease.label))
                assert BACKENDS[lease.provider].exists(lease.label), lease.provider
        payload = kit.workflow_run_completed(
            github.repo.id, github.repo.full_name, claims.run_id, 1, github.installation.id
        )
        delivered = github.sandbox.deliver(
            f"{server.url}/webhook", "workflow_run", payload, app=github.app
        )
        assert delivered.json() == {"outcome": "queued", "queued": 4}
        assert RevocationWorker(service.extensions["runkeys"]).drain() == 4
        assert {stored(ledger(service), lease.id).state for lease in leases} == {LeaseState.REVOKED}
        for backend, label in minted:
            assert not backend.exists(label), f"{backend.provider} {label} is still there"
    finally:
        server.stop()
        for backend, label in minted:  # what a failed test left behind
            backend.drop(label)
