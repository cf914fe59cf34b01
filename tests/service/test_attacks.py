"""Repository A's workflow tries to have the service destroy credentials its run never minted.

Every attack is made as a real one would be: a real OIDC token from the sandbox's issuer for a
run of A, the real service app, and real credentials that must survive — a PostgreSQL role, a
MariaDB user and a Redis ACL user runkeys did not make, another repository's runkeys role.
Each registration is refused; where a lease gets into the ledger anyway (a row written by hand,
or by an older version), the worker runs and refuses to touch anything not the lease's.
Afterwards each credential is still there. Deploy keys: test_attacks_deploy_keys.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from msgspec.structs import replace
from sqlalchemy import update

from handler.ledger import tables
from handler.ledger.leases import get
from runkeys import labels
from runkeys.connections import Connection
from runkeys.leases import LeaseRequest, LeaseState
from runkeys.providers import MintRequest
from runkeys.providers.postgres import PostgresProvider
from tests.service.attack_kit import (
    BACKENDS,
    Backend,
    armed_service,
    ledger,
    register,
    run_worker,
)
from tests.service.conftest import GitHub
from tests.service.kit import Clock, identity, js, put, stored
from tests.services import need, unique


@pytest.fixture
def service(github: GitHub, tmp_path: Path, clock: Clock) -> Iterator[Flask]:
    with armed_service(github, tmp_path, clock) as made:
        yield made


@pytest.fixture
def client(service: Flask) -> FlaskClient:
    return service.test_client()


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
    # rk_, the first 16 hex digits of sha256("0123456789abcdef0123"), the key name, cut at 32
    assert made[0] == "rk_1bd8fd47297046f9_database_url"
    assert labels.label(ids[0], "key-with.odd chars").endswith("_key_with_odd")
    assert not labels.is_runkeys_name("postgres")
    assert not labels.is_runkeys_name("app_owner")
    assert not labels.is_runkeys_name("rk_" + "x" * 30)  # longer than MySQL allows


def test_a_label_cut_right_after_an_underscore_does_not_end_in_one() -> None:
    """The key name is cut where the label reaches 32 characters: when the cut falls just
    after an `_`, the label ends before it (`rk_<digest>_primary_key`, 31 characters), the
    name the providers make and the service expects; never `…primary_key_`."""
    lease_id = "0123456789abcdef0123"
    digest = hashlib.sha256(lease_id.encode()).hexdigest()[:16]
    assert labels.label(lease_id, "PRIMARY_KEY_URL") == f"rk_{digest}_primary_key"
    assert labels.label(lease_id, "SHORT_") == f"rk_{digest}_short"


def test_an_old_actions_label_is_refused(client: FlaskClient, github: GitHub) -> None:
    """The label earlier actions made from the id's first 8 characters names nothing now."""
    lease = github.lease(secret=False)
    old = f"rk_{lease.id[:8]}_{lease.key_name.lower()}"
    stale = github.lease(secret=False, lease_id=lease.id, reference=f"random:{old}")
    assert js(register(client, github, stale))["error"] == "reference_mismatch"
