"""The sweeper: TTL expiry, reconciling runs GitHub (the sandbox) reports completed, orphaned
environments, and forgetting old ids."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import timedelta

import msgspec
import pytest
from flask import Flask
from sqlalchemy import select

from handler.ledger import tables
from handler.ledger.history import history
from handler.ledger.leases import get
from handler.ledger.seen import first_delivery
from handler.service import Service
from handler.sweeper import Sweeper
from handler.worker import RevocationWorker
from runkeys.leases import Lifetime
from runkeys_sandbox.server import webhooks
from tests.service.conftest import GitHub
from tests.service.kit import Clock, identity, put, states, workflow_run_completed


@pytest.fixture
def service(app: Flask) -> Service:
    made: Service = app.extensions["runkeys"]
    return made


def test_expired_leases_are_queued(service: Service, github: GitHub, clock: Clock) -> None:
    who = identity(github.repo.full_name, github.repo.id)
    (short,) = put(
        service.ledger, who, github.lease(ttl=timedelta(minutes=10), now=clock.now), now=clock.now
    )
    (long,) = put(
        service.ledger, who, github.lease(ttl=timedelta(hours=2), now=clock.now), now=clock.now
    )
    rotated = github.lease(key_name="ROTATED", lifetime=Lifetime.TTL, ttl=timedelta(minutes=30))
    (ttl,) = put(service.ledger, who, rotated, now=clock.now)
    assert Sweeper(service).sweep(reconcile=False).expired == 0
    clock.advance(minutes=11)
    report = Sweeper(service).sweep(reconcile=False)
    assert report.expired == 1
    assert states(service.ledger, [short, long]) == {short: "revoking", long: "active"}
    clock.advance(minutes=20)  # a `ttl` lease ends at its TTL, like any other
    assert Sweeper(service).sweep(reconcile=False).expired == 1
    assert states(service.ledger, [ttl, long]) == {ttl: "revoking", long: "active"}
    with service.ledger.begin() as conn:
        stored = get(conn, short)
    assert stored is not None
    assert stored.retire_reason == "sweeper: ttl"


def test_runs_github_reports_completed_are_reconciled(
    service: Service, github: GitHub, clock: Clock
) -> None:
    sandbox = github.sandbox
    running = sandbox.add_workflow_run(github.repo, status="in_progress")
    finished = sandbox.add_workflow_run(github.repo, status="in_progress")
    rerun = sandbox.add_workflow_run(github.repo, status="in_progress")
    ids = {}
    for name, run, attempt, lifetime in [
        ("running", running, 1, Lifetime.RUN),
        ("finished-run", finished, 1, Lifetime.RUN),
        ("finished-job", finished, 1, Lifetime.JOB),
        ("finished-ttl", finished, 1, Lifetime.TTL),
        ("old-attempt", rerun, 1, Lifetime.RUN),
        ("deleted-run", None, 1, Lifetime.RUN),
    ]:
        run_id = run.id if run else 987654321
        who = identity(github.repo.full_name, github.repo.id, run_id=run_id, run_attempt=attempt)
        (ids[name],) = put(service.ledger, who, github.lease(lifetime=lifetime), now=clock.now)
    (pr_lease,) = put(
        service.ledger,
        identity(
            github.repo.full_name, github.repo.id, run_id=finished.id, ref="refs/pull/9/merge"
        ),
        github.lease(lifetime=Lifetime.PR),
        now=clock.now,
    )
    sandbox.set_run_status(github.repo, finished.id, "completed", "success")
    sandbox.set_run_status(github.repo, rerun.id, "in_progress", run_attempt=2)
    assert Sweeper(service).sweep().runs_checked == 0  # fresh runs get a minute first
    clock.advance(minutes=2)
    report = Sweeper(service).sweep()
    assert (report.runs_checked, report.reconciled, report.errors) == (4, 4, [])
    assert states(service.ledger, [*ids.values(), pr_lease]) == {
        ids["running"]: "active",
        ids["finished-run"]: "revoking",
        ids["finished-job"]: "revoking",
        ids["finished-ttl"]: "active",  # its run is over; only its TTL ends it
        ids["old-attempt"]: "revoking",
        ids["deleted-run"]: "revoking",
        pr_lease: "active",  # a pr lease waits for its pull request
    }
    assert Sweeper(service).sweep().runs_checked == 0  # checked runs rest for the interval
    sandbox.set_run_status(github.repo, running.id, "completed", "cancelled")
    clock.advance(minutes=11)
    assert Sweeper(service).sweep().reconciled == 1
    assert states(service.ledger, [ids["running"]]) == {ids["running"]: "revoking"}


def test_github_failing_leaves_leases_for_the_next_sweep(
    service: Service, github: GitHub, clock: Clock
) -> None:
    run = github.sandbox.add_workflow_run(github.repo, status="completed", conclusion="success")
    who = identity(github.repo.full_name, github.repo.id, run_id=run.id)
    (lease_id,) = put(service.ledger, who, github.lease(), now=clock.now)
    github.sandbox.inject_fault("GET", rf"/actions/runs/{run.id}$", status=422, times=None)
    clock.advance(minutes=2)
    report = Sweeper(service).sweep()
    assert report.reconciled == 0
    assert len(report.errors) == 1
    assert "422" in report.errors[0]
    github.sandbox.clear_faults()
    clock.advance(minutes=11)
    assert Sweeper(service).sweep().reconciled == 1
    assert states(service.ledger, [lease_id]) == {lease_id: "revoking"}


def test_an_environment_a_crash_left_behind_is_deleted(
    service: Service, github: GitHub, clock: Clock
) -> None:
    store = service.secrets_for(github.repo.full_name)
    store.create_environment("ci-run-5")
    who = identity(github.repo.full_name, github.repo.id)
    item = github.lease(environment="ci-run-5", environment_created=True)
    put(service.ledger, who, item, now=clock.now)
    with service.ledger.begin() as conn:  # revoked, but the worker died before the cleanup
        conn.exec_driver_sql(f"UPDATE leases SET state = 'revoked' WHERE id = '{item.id}'")
    assert Sweeper(service).sweep().environments_deleted == 1
    assert "ci-run-5" not in github.sandbox.environment_names(github.repo)
    assert Sweeper(service).sweep().environments_deleted == 0


def test_old_deliveries_are_forgotten(service: Service, clock: Clock) -> None:
    with service.ledger.begin() as conn:
        first_delivery(conn, "old", event="ping", action=None, outcome="pong", now=clock.now)
    clock.advance(days=9)
    assert Sweeper(service).sweep(reconcile=False).deliveries_pruned == 1
    assert Sweeper(service).sweep(reconcile=False).deliveries_pruned == 0


def scan_rows(service: Service) -> dict[tuple[int, int], tuple[str, int]]:
    """(run, attempt) → (state, findings) of every log scan."""
    with service.ledger.begin() as conn:
        rows = conn.execute(select(tables.log_scans)).all()
    return {(row.run_id, row.run_attempt): (row.state, row.findings) for row in rows}


def test_a_run_the_sweeper_finds_over_is_log_scanned_once(
    app: Flask, service: Service, github: GitHub, clock: Clock
) -> None:
    """The workflow_run delivery was lost: the sweeper retires the run's key and queues the
    scan of its logs, which finds the key printed base64-encoded. A run still going, or one
    deleted (its logs went with it), is not scanned; the delivery arriving late queues no
    second scan of the same attempt."""
    sandbox, repo = github.sandbox, github.repo
    finished = sandbox.add_workflow_run(repo, status="in_progress")
    running = sandbox.add_workflow_run(repo, status="in_progress")
    rerun = sandbox.add_workflow_run(repo, status="in_progress")
    value = secrets.token_urlsafe(32)
    leased = msgspec.structs.replace(
        github.lease(), fingerprint=hashlib.sha256(value.encode()).hexdigest()
    )
    ids = {}
    for name, run_id, item in [
        ("finished", finished.id, leased),
        ("running", running.id, github.lease()),
        ("rerun", rerun.id, github.lease()),
        ("deleted", 987654321, github.lease()),
    ]:
        who = identity(repo.full_name, repo.id, run_id=run_id)
        (ids[name],) = put(service.ledger, who, item, now=clock.now)
    printed = base64.b64encode(f"token={value}".encode()).decode()
    sandbox.set_run_logs(repo, finished.id, {"e2e": [("Run tests", f"ok\n{printed}\n")]})
    sandbox.set_run_status(repo, finished.id, "completed", "success")
    sandbox.set_run_status(repo, rerun.id, "in_progress", run_attempt=2)
    clock.advance(minutes=2)
    assert Sweeper(service).sweep().reconciled == 3
    assert scan_rows(service) == {(finished.id, 1): ("queued", 0), (rerun.id, 1): ("queued", 0)}

    RevocationWorker(service).drain()
    assert scan_rows(service)[(finished.id, 1)] == ("done", 1)
    with service.ledger.begin() as conn:
        found = [e.detail for e in history(conn, ids["finished"]) if e.action == "leaked_in_logs"]
    assert found == [
        f"API_TOKEN (its value, base64) in the logs of run {finished.id} attempt 1: "
        "job 'e2e', step 'Run tests', line 2"
    ]
    assert states(service.ledger, [ids["running"]]) == {ids["running"]: "active"}

    payload = workflow_run_completed(
        repo.id, repo.full_name, finished.id, 1, github.installation.id
    )
    data = webhooks.encode(payload)
    headers = webhooks.delivery_headers(
        "workflow_run",
        data,
        secret=github.app.webhook_secret,
        delivery_id=webhooks.new_delivery_id(),
    )
    assert app.test_client().post("/webhook", data=data, headers=headers).status_code == 200
    RevocationWorker(service).drain()
    assert scan_rows(service)[(finished.id, 1)] == ("done", 1)
    assert len(scan_rows(service)) == 2
