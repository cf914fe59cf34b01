"""What broker mode tells and records besides the keys: the 409 of a repeated request says what
became of it, a rollback's failed revoke is left in the ledger for the worker (and wakes it), a
post step's retirement is recorded as the broker's, a failure before any key is named names
none, and a request's row is forgotten once its run is over (a request outliving its row grants
nothing). Each checks the ledger's rows or the worker's wake-ups; the sweep's count, its log."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Row, select

from handler.broker import LedgerRegistrar, ServiceJob
from handler.ledger import tables
from handler.ledger.broker import claim_request, release_request
from handler.logs import JsonFormatter
from handler.sweeper import Sweeper
from handler.worker import RevocationWorker
from runkeys.broker import new_key_pair
from runkeys.errors import RunkeysError
from tests.service.attack_kit import run_worker
from tests.service.conftest import GitHub
from tests.service.kit import Clock, identity, js
from tests.service.test_keys_api import (
    NOTHING,
    app_with_policy,
    granted_with_lifetimes,
    minted_accounts,
    names,
    policy,
    post,
    request_body,
    retire,
    spec,
)


@pytest.fixture
def broker(
    environ: dict[str, str], github: GitHub, tmp_path: Path, clock: Clock
) -> Iterator[Flask]:
    yield from app_with_policy(policy(github.repo.account.login), environ, tmp_path, clock)


@pytest.fixture
def client(broker: Flask) -> FlaskClient:
    return broker.test_client()


@pytest.fixture
def woken(broker: Flask) -> list[int]:
    """Each time the service wakes its worker (no worker runs in these tests)."""
    calls: list[int] = []
    service = broker.extensions["runkeys"]
    service.wake_worker = lambda: calls.append(1)
    return calls


def leases_by_name(broker: Flask) -> dict[str, Row[Any]]:
    with broker.extensions["runkeys"].ledger.begin() as conn:
        return {r.key_name: r for r in conn.execute(select(tables.leases))}


def test_a_repeated_request_is_told_what_became_of_it(
    client: FlaskClient, github: GitHub, broker: Flask
) -> None:
    _, public = new_key_pair()
    claims = github.claims()
    granted = request_body(spec(names()), public)
    assert post(client, granted, github.auth(claims)).status_code == 201
    again = post(client, granted, github.auth(github.claims(claims.run_id)))
    assert again.status_code == 409
    lease_ids = js(again)["lease_ids"]
    assert len(lease_ids) == 3
    assert f"was granted before (leases {', '.join(lease_ids)})" in js(again)["message"]
    assert "being served" not in js(again)["message"]
    # Another replica's claim, its keys still being minted: wait, not "granted before".
    serving = request_body(spec(names()), public)
    service = broker.extensions["runkeys"]
    with service.ledger.begin() as conn:
        mine = identity(github.repo.full_name, github.repo.id, run_id=claims.run_id)
        assert claim_request(conn, mine, serving["request_id"], now=service.clock()) is None
    busy = post(client, serving, github.auth(github.claims(claims.run_id)))
    assert busy.status_code == 409
    assert f"Request {serving['request_id']} is being served now" in js(busy)["message"]
    assert "granted before" not in js(busy)["message"]


@pytest.mark.parametrize("revoke", ["fails", "works"])
def test_a_rollback_leaves_a_failed_revoke_to_the_worker_and_wakes_it(
    client: FlaskClient, github: GitHub, broker: Flask, woken: list[int], revoke: str
) -> None:
    _, public = new_key_pair()
    keys = names()
    # The second secret cannot be written: the first key, written already, is rolled back.
    github.sandbox.inject_fault("PUT", rf"/secrets/{keys['cache']}$", status=422, times=None)
    if revoke == "fails":  # ... and neither its environment nor then its secret can be deleted
        github.sandbox.inject_fault("DELETE", r"/environments/ci-run-\d+$", status=422, times=None)
        github.sandbox.inject_fault("DELETE", rf"/secrets/{keys['pg']}$", status=422, times=None)
    data = request_body(spec(keys), public)
    data["destination"] = {"kind": "environment", "environment": "ci-run-{run_id}"}
    response = post(client, data, github.auth(github.claims()))
    assert response.status_code == 502, js(response)
    rows = leases_by_name(broker)
    assert (rows[keys["cache"]].state, rows[keys["cache"]].last_error) == ("revoked", None)
    if revoke == "works":
        assert rows[keys["pg"]].state == "revoked"
        assert woken == []
        return
    # The worker retries it (now, not at its next round), knowing why it failed.
    assert rows[keys["pg"]].state == "revoking"
    assert "422" in (rows[keys["pg"]].last_error or "")
    assert woken == [1]
    github.sandbox.clear_faults()
    run_worker(broker, rows[keys["pg"]].id)
    assert leases_by_name(broker)[keys["pg"]].state == "revoked"
    assert minted_accounts(keys) == NOTHING


def test_the_post_steps_retirement_is_recorded_as_the_brokers_and_wakes_the_worker(
    client: FlaskClient, github: GitHub, broker: Flask, woken: list[int]
) -> None:
    claims = github.claims()
    keys, request_id = granted_with_lifetimes(client, github, claims)
    body = {"request_id": request_id, "scope": "job"}
    response = retire(client, body, github.auth(github.claims(claims.run_id)))
    assert response.status_code == 200, js(response)
    assert woken == [1]
    rows = leases_by_name(broker)
    job_keys = {rows[keys["pg"]].id, rows[keys["token"]].id}
    with broker.extensions["runkeys"].ledger.begin() as conn:
        events = list(
            conn.execute(
                select(tables.lease_events).where(tables.lease_events.c.action == "queued")
            )
        )
    assert sorted((e.lease_id, e.actor, e.detail) for e in events) == sorted(
        (lease_id, "broker", f"post step: retire job keys of request {request_id}")
        for lease_id in job_keys
    )
    # Asked again: nothing left to queue, nothing to wake the worker for.
    again = retire(client, body, github.auth(github.claims(claims.run_id)))
    assert again.status_code == 200, js(again)
    assert woken == [1]
    assert RevocationWorker(broker.extensions["runkeys"]).drain() == 2


def test_a_failure_before_any_key_was_minted_names_no_key(
    client: FlaskClient, github: GitHub, broker: Flask
) -> None:
    """The environment cannot be created: no key failed, so the 502 names none."""
    _, public = new_key_pair()
    keys = names()
    github.sandbox.inject_fault("PUT", r"/environments/ci-run-\d+$", status=422, times=None)
    data = request_body(spec(keys), public)
    data["destination"] = {"kind": "environment", "environment": "ci-run-{run_id}"}
    response = post(client, data, github.auth(github.claims()))
    assert response.status_code == 502, js(response)
    assert js(response)["error"] == "keys_not_issued"
    assert "key" not in js(response)
    assert minted_accounts(keys) == NOTHING
    assert github.sandbox.environment_names(github.repo) == []


def test_the_audit_row_says_who_asked_for_what_and_why_it_was_decided(
    client: FlaskClient, github: GitHub, broker: Flask
) -> None:
    """Every column from the token and the request, each value distinct from the others."""
    _, public = new_key_pair()
    keys = names()
    shared = "octo/shared/.github/workflows/keys.yml@refs/heads/main"
    claims = github.claims(
        ref="refs/pull/7/merge",
        event_name="pull_request",
        actor="mona",
        run_attempt=2,
        extra={"job_workflow_ref": shared},
    )
    data = request_body(spec(keys, pg_ttl="2h"), public)  # over the rule's 1h
    data["destination"] = {"kind": "environment", "environment": "ci-pr-{pr}"}
    response = post(client, data, github.auth(claims))
    assert response.status_code == 403, js(response)
    with broker.extensions["runkeys"].ledger.begin() as conn:
        (row,) = conn.execute(select(tables.policy_decisions))
    recorded = row._asdict()
    assert recorded | {"id": None, "at": None} == {
        "id": None,
        "at": None,
        "outcome": "deny",
        "rules": ["app-ci"],
        "repository": github.repo.full_name,
        "repository_id": github.repo.id,
        "ref": "refs/pull/7/merge",
        "event_name": "pull_request",
        "workflow": f"{github.repo.full_name}/.github/workflows/ci.yml@refs/pull/7/merge",
        "job_workflow_ref": shared,
        "run_id": claims.run_id,
        "run_attempt": 2,
        "actor": "mona",
        "destination": "environment 'ci-pr-7'",
        "request_id": data["request_id"],
        "keys": recorded["keys"],  # below, key by key
    }
    by_name = {k["name"]: k for k in recorded["keys"]}
    assert sorted(by_name) == sorted(keys.values())
    denied = by_name[keys["pg"]]
    assert {k: v for k, v in denied.items() if k != "reason"} == {
        "name": keys["pg"],
        "provider": "postgres",
        "connection": "CI_DB",  # normalized
        "outcome": "deny",
        "rule": "app-ci",
        "field": "ttl",
    }
    assert "1h" in denied["reason"]
    assert by_name[keys["cache"]] == {
        "name": keys["cache"],
        "provider": "redis",
        "connection": "CI_CACHE",
        "outcome": "allow",
        "rule": "app-ci",
        "field": None,
        "reason": "",
    }


# --- forgetting requests ------------------------------------------------------------------


def request_rows(broker: Flask) -> dict[str, tuple[str, list[str]]]:
    """request id → (state, lease ids) of every broker request row."""
    with broker.extensions["runkeys"].ledger.begin() as conn:
        rows = conn.execute(select(tables.broker_requests))
        return {r.request_id: (r.state, list(r.lease_ids)) for r in rows}


def decisions_count(broker: Flask) -> int:
    with broker.extensions["runkeys"].ledger.begin() as conn:
        return len(list(conn.execute(select(tables.policy_decisions))))


def random_keys(count: int) -> str:
    tag = uuid.uuid4().hex[:8]
    return "".join(f"TK{tag}{i}: {{provider: random, ttl: 30m}}\n" for i in range(count))


def test_a_request_is_forgotten_36_days_after_its_claim_and_its_id_is_then_a_new_request(
    client: FlaskClient,
    github: GitHub,
    broker: Flask,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Kept 36 days from its claim on the service's clock (a run lasts 35 days at most, waits
    and approvals included, so its retries and its `max_keys` count are over), granted or
    still minting (a replica died mid-mint); forgotten a moment later, the audit kept. The same
    id is then a new request: decided and counted afresh, and minted."""
    caplog.set_level(logging.INFO, logger="runkeys.service.sweeper")
    service = broker.extensions["runkeys"]
    _, public = new_key_pair()
    claims = github.claims()
    data = request_body(random_keys(3), public)
    granted = post(client, data, github.auth(claims))
    assert granted.status_code == 201, granted.json
    first_leases = [k["lease_id"] for k in js(granted)["keys"]]
    mine = identity(github.repo.full_name, github.repo.id, run_id=claims.run_id)
    with service.ledger.begin() as conn:
        assert claim_request(conn, mine, "stuck-mid-mint", now=clock()) is None
    kept = {data["request_id"]: ("granted", first_leases), "stuck-mid-mint": ("minting", [])}

    clock.advance(days=36)
    assert Sweeper(service).sweep(reconcile=False).broker_requests_pruned == 0
    assert request_rows(broker) == kept
    assert RevocationWorker(service).drain() == 3  # the first keys, past their TTL
    clock.advance(microseconds=1)
    assert Sweeper(service).sweep(reconcile=False).broker_requests_pruned == 2
    assert request_rows(broker) == {}
    assert decisions_count(broker) == 1
    lines = [
        json.loads(JsonFormatter().format(r))
        for r in caplog.records
        if r.name == "runkeys.service.sweeper" and r.getMessage() == "sweep done"
    ]
    assert [x["broker_requests_pruned"] for x in lines] == [0, 2]

    # 3 keys more in the same run attempt: within max_keys (4) only as the first 3 are gone.
    again = post(client, data, github.auth(github.claims(claims.run_id)))
    assert again.status_code == 201, again.json
    again_leases = [k["lease_id"] for k in js(again)["keys"]]
    assert set(again_leases).isdisjoint(first_leases)
    assert request_rows(broker) == {data["request_id"]: ("granted", again_leases)}
    assert decisions_count(broker) == 2


def test_a_request_whose_row_was_forgotten_while_it_was_served_grants_nothing(
    github: GitHub, broker: Flask, clock: Clock
) -> None:
    """A request outlives its row (pruned while it minted) and a retry claims the id again:
    the first finds its own claim gone when it registers, so it registers nothing and fails
    (issuance then rolls its keys back), and its release leaves the retry's claim alone."""
    service = broker.extensions["runkeys"]
    mine = identity(github.repo.full_name, github.repo.id, run_id=github.claims().run_id)
    request_id = uuid.uuid4().hex
    first_at = clock()
    with service.ledger.begin() as conn:
        assert claim_request(conn, mine, request_id, now=first_at) is None
    clock.advance(days=37)
    assert Sweeper(service).sweep(reconcile=False).broker_requests_pruned == 1
    retry_at = clock()
    with service.ledger.begin() as conn:
        assert claim_request(conn, mine, request_id, now=retry_at) is None

    def registrar(claimed_at: datetime) -> LedgerRegistrar:
        installation = github.installation.id
        return LedgerRegistrar(
            service, mine, installation, request_id, claimed_at, ServiceJob(mine)
        )

    late = github.lease(key_name="LATE")
    with pytest.raises(RunkeysError, match="forgotten by the ledger"):
        registrar(first_at).register([late])
    with service.ledger.begin() as conn:
        assert list(conn.execute(select(tables.leases))) == []
        release_request(conn, mine, request_id, claimed_at=first_at)
    assert request_rows(broker) == {request_id: ("minting", [])}
    # The retry's own claim grants.
    retried = github.lease(key_name="RETRIED")
    registrar(retry_at).register([retried])
    assert request_rows(broker) == {request_id: ("granted", [retried.id])}
    run_worker(broker, retried.id)
