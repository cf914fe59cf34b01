"""Repository A's workflow tries to have the service send an `http` request its run never made:
a reference that climbs out of the revoke path to the issuer's admin endpoint, a revoke header
that forges another lease's label. Real OIDC tokens, the real app, the test issuer served for
real behind the service's connection at `/api/`; afterwards the issuer has received nothing and
its admin's users are all there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from handler.app import create_app
from handler.ledger import tables
from handler.ledger.leases import get
from runkeys.leases import LeaseRequest, LeaseState
from tests.providers.issuer_server import ACCOUNT, Issuer
from tests.service.attack_kit import ledger, register, run_worker
from tests.service.conftest import GitHub, make_environ
from tests.service.kit import Clock, identity, js, put, stored

USERS = {1: "alice", 2: "bob"}
# The audit's revoke template: `{reference}` of `..`, twice, climbs from /api/ to the root.
CLIMB_PARAMS: dict[str, Any] = {
    "mint": {"path": "/v1/tokens", "body": {"name": "{label}"}},
    "response": {"value": "data.token", "reference": "data.id"},
    "revoke": {"method": "POST", "path": "/{reference}/{reference}/admin/users/1/delete"},
    "retries": 0,
    "timeout": 5,
}


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    served = Issuer()
    served.start()
    yield served
    served.stop()


@pytest.fixture
def service(github: GitHub, tmp_path: Path, clock: Clock, issuer: Issuer) -> Iterator[Flask]:
    """The service holding a connection to the issuer's API at /api/, with the admin account."""
    assert issuer._server is not None
    user, password = ACCOUNT
    url = f"http://{user}:{password}@127.0.0.1:{issuer._server.port}/api/"
    environ = make_environ(github.sandbox, github.app, f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    made = create_app(environ | {"RUNKEYS_CONNECTION_ISSUER": url}, clock=clock)
    yield made
    made.extensions["runkeys"].close()


@pytest.fixture
def client(service: Flask) -> FlaskClient:
    return service.test_client()


def http_lease(github: GitHub, reference: str, params: dict[str, Any]) -> LeaseRequest:
    return github.lease(
        key_name="API_TOKEN",
        provider="http",
        connection="issuer",
        params=params,
        reference=reference,
        secret=False,
    )


@pytest.mark.parametrize("reference", ["..", "%2e%2e", "a/../../admin", "a%2F..%2Fadmin"])
def test_a_reference_that_climbs_out_of_the_revoke_path_cannot_be_registered(
    client: FlaskClient, github: GitHub, service: Flask, issuer: Issuer, reference: str
) -> None:
    attack = http_lease(github, reference, CLIMB_PARAMS)
    response = register(client, github, attack)
    assert (response.status_code, js(response)["error"]) == (422, "reference_mismatch")
    assert attack.label in js(response)["message"]
    with ledger(service).begin() as conn:
        assert get(conn, attack.id) is None
    assert issuer.requests == []
    assert issuer.users == USERS


@pytest.mark.parametrize("name", ["Runkeys-Label", "runkeys-label", "RUNKEYS-LABEL"])
def test_a_revoke_header_forging_another_leases_label_cannot_be_registered(
    client: FlaskClient, github: GitHub, service: Flask, issuer: Issuer, name: str
) -> None:
    victim = issuer.add("victim-token", label="rk_victim")
    revoke = {"path": "/v1/tokens/{reference}", "headers": {name: "rk_victim"}}
    attack = http_lease(github, victim.id, {**CLIMB_PARAMS, "revoke": revoke})
    response = register(client, github, attack)
    assert (response.status_code, js(response)["error"]) == (422, "invalid_params")
    assert "params.revoke.headers" in js(response)["message"]
    assert "runkeys sets it itself" in js(response)["message"]
    with ledger(service).begin() as conn:
        assert get(conn, attack.id) is None
    assert [t.id for t in issuer.live()] == ["victim-token"]


@pytest.mark.parametrize("labelled", [True, False], ids=["labelled", "older-row"])
def test_a_forged_ledger_row_that_climbs_reaches_nothing(
    github: GitHub, service: Flask, issuer: Issuer, labelled: bool
) -> None:
    """A row written without the registration check (by hand, or by an older version; without
    a label, as older versions wrote them): the worker runs it, the provider refuses to send."""
    attack = http_lease(github, "..", CLIMB_PARAMS)
    put(ledger(service), identity(github.repo.full_name, github.repo.id), attack)
    if not labelled:
        with ledger(service).begin() as conn:
            conn.execute(
                update(tables.leases).where(tables.leases.c.id == attack.id).values(label=None)
            )
    run_worker(service, attack.id)
    lease = stored(ledger(service), attack.id)
    assert lease.state is LeaseState.FAILED
    assert lease.last_error is not None
    assert "refusing" in lease.last_error
    assert issuer.requests == []
    assert issuer.users == USERS
