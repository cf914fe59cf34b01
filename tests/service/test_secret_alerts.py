"""Secret scanning alerts retire leaked keys (issue 18, item 1), against the stand-in over real
HTTP and the real ledgers (SQLite and PostgreSQL): the stand-in raises the alert and sends the
signed `secret_scanning_alert` delivery, the service records it, and one worker cycle fetches
the alert, retires the matching live lease of that repository and resolves the alert.

Anything else (another value, another repository's value, a key retired already, a forged
delivery) changes no lease and leaves the alert open. No value reaches a log or the ledger."""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import requests
from flask import Flask
from sqlalchemy import select

from handler.ledger import Ledger, tables
from handler.ledger.alerts import (
    AlertCheck,
    AlertRecord,
    AlertState,
    Matches,
    Outcome,
    all_revoked,
    claim_alerts,
    due_alerts,
    finish_alert,
    get_alert,
    matching_leases,
    record_alert,
)
from handler.ledger.history import history
from handler.ledger.queue import LeasesById, queue
from handler.logs import configure
from handler.preflight import cause_of
from handler.service import Service
from handler.worker import RevocationWorker
from runkeys.leases import LeaseState, PartFingerprint, fingerprint
from runkeys.preflight import Cause
from runkeys.providers.base import MintRequest
from runkeys.providers.random_value import RandomProvider
from runkeys_sandbox.server import payloads, webhooks
from runkeys_sandbox.server.state import Repository, SecretScanningAlert
from tests.almost import last_char_changed
from tests.e2e.leaks import Scanner, Secret
from tests.service.conftest import GitHub
from tests.service.kit import Clock, identity, lease, put, stored

ALERTS = {"secret_scanning_alerts": "write"}


@pytest.fixture
def service(app: Flask, github: GitHub) -> Service:
    """The app's service, its GitHub client without retries of its own (a failure fails the
    attempt at once), giving up after 3 attempts; the installation may read and resolve
    alerts, as the manifest asks."""
    made: Service = app.extensions["runkeys"]
    assert made.config.github is not None
    made.config = replace(
        made.config,
        github=replace(made.config.github, retries=0),
        worker=replace(made.config.worker, max_attempts=3),
    )
    permissions = {**github.installation.permissions, **ALERTS}
    github.sandbox.update_installation(github.installation, permissions=permissions)
    return made


def mint() -> str:
    """An `rk_` token as the random provider makes it."""
    request = MintRequest("API_TOKEN", {}, datetime.now(UTC) + timedelta(hours=1), "rk_test")
    return RandomProvider().mint(request).value


def lease_with(
    github: GitHub,
    service: Service,
    value: str,
    repo: Repository | None = None,
    *,
    key_name: str = "API_TOKEN",
    password: str | None = None,
) -> str:
    """A live lease of `repo` (default: the test's) whose key is `value`, its secret written;
    with `password`, a secret part PASSWORD (as a database key's is kept: its fingerprint)."""
    repo = repo or github.repo
    item = replace_fingerprint(github.lease(repository=repo.full_name, key_name=key_name), value)
    if password is not None:
        item = with_password(item, password)
    assert item.secret is not None
    service.secrets_for(repo.full_name).put(item.secret, value)
    installation = github.sandbox.world.installation_for(github.app, repo)
    assert installation is not None
    (lease_id,) = put(
        service.ledger,
        identity(repo.full_name, repo.id, owner_id=repo.account.id),
        item,
        installation_id=installation.id,
    )
    return lease_id


def replace_fingerprint(item: Any, value: str) -> Any:
    return msgspec.structs.replace(item, fingerprint=fingerprint(value))


def with_password(item: Any, password: str) -> Any:
    part = PartFingerprint("PASSWORD", hashlib.sha256(password.encode()).hexdigest())
    return msgspec.structs.replace(item, parts=(part,))


def database_key() -> tuple[str, str]:
    """A database key as the `postgres` provider hands it out: its URL, and its password."""
    password = secrets.token_urlsafe(24)
    return f"postgresql://rk_ci_db_{secrets.token_hex(4)}:{password}@db.test:5432/app", password


def raise_alert(github: GitHub, repo: Repository, value: str) -> tuple[SecretScanningAlert, Any]:
    """Secret scanning finds `value` in `repo`: the control API raises the alert and delivers
    it; the alert and what the service answered."""
    answer = requests.post(
        f"{github.sandbox.url}/_sandbox/repos/{repo.full_name}/secret-scanning/alerts",
        json={"secret": value},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    data = answer.json()
    assert value not in answer.text  # the control API never repeats it
    return repo.secret_alerts[data["number"]], data["delivery"]


def alert_row(service: Service, repo: Repository, number: int) -> AlertRecord:
    with service.ledger.begin() as conn:
        found = get_alert(conn, repo.id, number)
    assert found is not None
    return found


def events(service: Service, lease_id: str) -> list[tuple[str, str, str]]:
    with service.ledger.begin() as conn:
        return [(e.actor, e.action, e.detail) for e in history(conn, lease_id)]


def ledger_text(ledger: Ledger) -> str:
    """Every row of every table, as text: what a scan of either engine's storage reads."""
    with ledger.begin() as conn:
        return "\n".join(
            repr(row)
            for table in tables.metadata.sorted_tables
            for row in conn.execute(select(table))
        )


def assert_no_value(service: Service, logs: str, *values: str) -> None:
    scanner = Scanner([Secret(f"value {i}", v) for i, v in enumerate(values)])
    problems = scanner.text("logs", logs) + scanner.text("ledger", ledger_text(service.ledger))
    url = service.config.database_url
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        for suffix in ("", "-wal"):
            try:
                with open(path + suffix, "rb") as stored_file:
                    problems += scanner.data(path + suffix, stored_file.read())
            except FileNotFoundError:
                continue
    assert problems == []
    assert logs  # something was logged, and scanned


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Everything logged, at DEBUG, through the service's own JSON logging (PyGithub's logger
    included: it logs whole answers at DEBUG, the alert's value among them)."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("github").level)
    stream = io.StringIO()
    configure("DEBUG")
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    root.addHandler(caplog.handler)
    try:
        yield stream
    finally:
        root.handlers[:], level, github_level = saved
        root.setLevel(level)
        logging.getLogger("github").setLevel(github_level)


def test_an_alert_on_a_live_token_retires_it_within_one_cycle_and_resolves_it(
    served: str, github: GitHub, service: Service, logs: io.StringIO
) -> None:
    value, bystander = mint(), mint()
    leaked = lease_with(github, service, value, key_name="LEAKED_TOKEN")
    other = lease_with(github, service, bystander, key_name="OTHER_TOKEN")
    alert, delivery = raise_alert(github, github.repo, value)
    assert delivery["status"] == 200
    assert delivery["body"] == {"outcome": "queued", "queued": 1}
    assert alert_row(service, github.repo, alert.number).state is AlertState.PENDING

    RevocationWorker(service).run_once()  # one cycle

    retired = stored(service.ledger, leaked)
    assert retired.state.value == "revoked"
    html_url = f"{github.sandbox.url}/{github.repo.full_name}/security/secret-scanning/1"
    assert retired.retire_reason == f"leaked: secret scanning alert {html_url}"
    assert cause_of(retired.retire_reason) is Cause.LEAKED  # what the check sub-action says
    assert ("secret-scanning", "queued", f"leaked: secret scanning alert {html_url}") in events(
        service, leaked
    )
    assert github.sandbox.secret_names(github.repo) == ["OTHER_TOKEN"]
    assert stored(service.ledger, other).state.value == "active"
    # GitHub's alert: resolved as revoked by the App, with runkeys' comment naming the lease.
    assert (alert.state, alert.resolution) == ("resolved", "revoked")
    assert alert.resolved_by is not None
    assert alert.resolved_by.login == f"{github.app.slug}[bot]"
    assert alert.resolution_comment is not None
    assert alert.resolution_comment.startswith("runkeys retired this key")
    assert leaked in alert.resolution_comment
    row = alert_row(service, github.repo, alert.number)
    assert (row.state, row.outcome, row.lease_ids) == (AlertState.DONE, Outcome.RETIRED, (leaked,))
    assert row.html_url == html_url
    # The value is asked for once, to match it; the look before resolving asks without it.
    path = f"/repos/{github.repo.full_name}/secret-scanning/alerts/{alert.number}"
    reads = [r for r in github.sandbox.requests if r.method == "GET" and r.path == path]
    assert [r.query.get("hide_secret") for r in reads] == [None, "true"]
    assert_no_value(service, logs.getvalue(), value, bystander)


def paced_calls(service: Service, installation: int) -> dict[str, float]:
    """The GitHub calls the installation's pace let through, by kind (its metric)."""
    sample = "runkeys_github_requests_total"
    return {
        kind: service.metrics.registry.get_sample_value(
            sample, {"installation": str(installation), "kind": kind}
        )
        or 0.0
        for kind in ("read", "write")
    }


def test_every_call_of_the_alerts_cycle_waits_for_the_installations_pace(
    served: str, github: GitHub, service: Service
) -> None:
    """Issue 16: each request the installation's token sends in the cycle (the alert's GET,
    its look without the value and its PATCH among them) was counted by its pace, a PATCH as
    a write: one sent around the pace would spend GitHub's budget unseen."""
    value = mint()
    leaked = lease_with(github, service, value)
    alert, _ = raise_alert(github, github.repo, value)
    before = paced_calls(service, github.installation.id)
    github.sandbox.clear_requests()

    RevocationWorker(service).run_once()

    assert stored(service.ledger, leaked).state.value == "revoked"
    assert (alert.state, alert.resolution) == ("resolved", "revoked")
    sent = [r for r in github.sandbox.requests if r.caller == "installation"]
    path = f"/repos/{github.repo.full_name}/secret-scanning/alerts/{alert.number}"
    assert [(r.method, r.query.get("hide_secret")) for r in sent if r.path == path] == [
        ("GET", None),
        ("GET", "true"),
        ("PATCH", None),
    ]
    after = paced_calls(service, github.installation.id)
    reads = sum(1 for r in sent if r.method == "GET")
    assert after["read"] - before["read"] == reads
    assert after["write"] - before["write"] == len(sent) - reads


def test_an_alert_on_a_value_no_lease_has_changes_nothing(
    served: str, github: GitHub, service: Service, logs: io.StringIO
) -> None:
    """A value wrong in its last character, and a token runkeys never leased."""
    value = mint()
    live = lease_with(github, service, value)
    near = value[:-1] + ("A" if value[-1] != "A" else "B")
    for found in (near, mint()):
        alert, _ = raise_alert(github, github.repo, found)
        RevocationWorker(service).run_once()
        assert (alert.state, alert.resolution, alert.resolution_comment) == ("open", None, None)
        row = alert_row(service, github.repo, alert.number)
        assert (row.state, row.outcome, row.lease_ids) == (AlertState.DONE, Outcome.NO_MATCH, ())
    assert stored(service.ledger, live).state.value == "active"
    assert [action for _, action, _ in events(service, live)] == ["registered"]
    assert_no_value(service, logs.getvalue(), value, near)


def test_a_sibling_repositorys_key_is_not_retired(
    served: str, github: GitHub, service: Service, logs: io.StringIO
) -> None:
    """Two repositories of one owner under one installation: an alert in one on the other's
    value retires nothing, whichever way round."""
    sibling = github.sandbox.add_repository(f"{github.repo.owner}/app-sibling")
    github.sandbox.update_installation(github.installation, repositories=[github.repo, sibling])
    theirs, ours = mint(), mint()
    sibling_lease = lease_with(github, service, theirs, sibling)
    own_lease = lease_with(github, service, ours)
    here, _ = raise_alert(github, github.repo, theirs)
    there, _ = raise_alert(github, sibling, ours)
    RevocationWorker(service).drain()
    assert stored(service.ledger, sibling_lease).state.value == "active"
    assert stored(service.ledger, own_lease).state.value == "active"
    for repo, alert in ((github.repo, here), (sibling, there)):
        assert alert.state == "open"
        assert alert_row(service, repo, alert.number).outcome is Outcome.NO_MATCH
    assert_no_value(service, logs.getvalue(), theirs, ours)


def test_an_alert_on_a_key_retired_already_leaves_it_and_the_alert_alone(
    served: str, github: GitHub, service: Service, clock: Clock, logs: io.StringIO
) -> None:
    value = mint()
    lease_id = lease_with(github, service, value)
    with service.ledger.begin() as conn:
        queue(conn, LeasesById((lease_id,)), actor="test", reason="run over", now=clock())
    RevocationWorker(service).drain()
    before = stored(service.ledger, lease_id)
    assert before.state.value == "revoked"
    alert, _ = raise_alert(github, github.repo, value)
    clock.advance(minutes=1)
    RevocationWorker(service).run_once()
    after = stored(service.ledger, lease_id)
    assert (after.state, after.retired_at, after.retire_reason) == (
        before.state,
        before.retired_at,
        "run over",
    )
    (note,) = [e for e in events(service, lease_id) if e[1] == "leak_reported"]
    assert note[0] == "secret-scanning"
    assert "secret-scanning/1" in note[2]
    assert alert.state == "open"
    row = alert_row(service, github.repo, alert.number)
    assert (row.state, row.outcome) == (AlertState.DONE, Outcome.RETIRED_ALREADY)
    assert_no_value(service, logs.getvalue(), value)


@pytest.mark.parametrize(
    "found",
    [
        pytest.param(lambda url, password: password, id="the password alone"),
        # GitHub's patterns find connection strings of other shapes than the key's URL
        pytest.param(
            lambda url, password: f"Server=db.test;User Id=app;Password={password};",
            id="in another connection string",
        ),
        pytest.param(lambda url, password: url, id="the key's URL"),
    ],
)
def test_an_alert_on_a_database_keys_password_retires_it(
    served: str, github: GitHub, service: Service, logs: io.StringIO, found: Any
) -> None:
    url, password = database_key()
    leaked = lease_with(github, service, url, key_name="DATABASE_URL", password=password)
    other_url, other_password = database_key()
    other = lease_with(github, service, other_url, key_name="OTHER_URL", password=other_password)
    alert, _ = raise_alert(github, github.repo, found(url, password))
    RevocationWorker(service).run_once()
    retired = stored(service.ledger, leaked)
    assert retired.state.value == "revoked"
    assert retired.retire_reason is not None
    assert retired.retire_reason.startswith("leaked: secret scanning alert ")
    assert stored(service.ledger, other).state.value == "active"
    assert (alert.state, alert.resolution) == ("resolved", "revoked")
    row = alert_row(service, github.repo, alert.number)
    assert (row.outcome, row.lease_ids) == (Outcome.RETIRED, (leaked,))
    assert_no_value(service, logs.getvalue(), url, password, other_url, other_password)


def test_a_password_wrong_in_its_last_character_or_a_siblings_password_retires_nothing(
    served: str, github: GitHub, service: Service, logs: io.StringIO
) -> None:
    """The part matches exactly, and only a lease of the alert's repository: a sibling of the
    same owner under the same installation holding that very password keeps its key."""
    sibling = github.sandbox.add_repository(f"{github.repo.owner}/app-sibling")
    github.sandbox.update_installation(github.installation, repositories=[github.repo, sibling])
    url, password = database_key()
    ours = lease_with(github, service, url, key_name="DATABASE_URL", password=password)
    their_url, their_password = database_key()
    theirs = lease_with(github, service, their_url, sibling, password=their_password)
    near, _ = raise_alert(github, github.repo, last_char_changed(password))
    elsewhere, _ = raise_alert(github, github.repo, their_password)
    RevocationWorker(service).drain()
    assert stored(service.ledger, ours).state.value == "active"
    assert stored(service.ledger, theirs).state.value == "active"
    for alert in (near, elsewhere):
        assert alert.state == "open"
        assert alert_row(service, github.repo, alert.number).outcome is Outcome.NO_MATCH
    assert_no_value(service, logs.getvalue(), url, password, their_url, their_password)


def test_a_lease_of_this_repository_under_another_installation_is_not_retired(
    served: str, github: GitHub, service: Service, logs: io.StringIO
) -> None:
    """The delivery's installation scopes the match: the same repository's lease recorded
    under another installation (one the App no longer has there) keeps its key."""
    value = mint()
    item = replace_fingerprint(github.lease(), value)
    who = identity(github.repo.full_name, github.repo.id, owner_id=github.repo.account.id)
    (other,) = put(service.ledger, who, item, installation_id=github.installation.id + 1)
    alert, _ = raise_alert(github, github.repo, value)
    RevocationWorker(service).run_once()
    assert stored(service.ledger, other).state.value == "active"
    assert alert.state == "open"
    assert alert_row(service, github.repo, alert.number).outcome is Outcome.NO_MATCH
    assert_no_value(service, logs.getvalue(), value)


def test_an_alert_on_a_key_being_retired_notes_the_leak_and_resolves_once_it_is(
    served: str, github: GitHub, service: Service, clock: Clock, logs: io.StringIO
) -> None:
    """The lease was queued for another reason (its run ended) when the alert came: that
    reason stands, the leak is in its history, and the alert is resolved once it is revoked."""
    value = mint()
    lease_id = lease_with(github, service, value)
    with service.ledger.begin() as conn:
        queue(conn, LeasesById((lease_id,)), actor="test", reason="run over", now=clock())
    alert, _ = raise_alert(github, github.repo, value)
    RevocationWorker(service).drain()
    after = stored(service.ledger, lease_id)
    assert (after.state.value, after.retire_reason) == ("revoked", "run over")
    html_url = f"{github.sandbox.url}/{github.repo.full_name}/security/secret-scanning/1"
    assert ("secret-scanning", "leaked", f"leaked: secret scanning alert {html_url}") in events(
        service, lease_id
    )
    assert (alert.state, alert.resolution) == ("resolved", "revoked")
    row = alert_row(service, github.repo, alert.number)
    assert (row.outcome, row.lease_ids) == (Outcome.RETIRED, (lease_id,))
    assert_no_value(service, logs.getvalue(), value)


def test_the_alert_waits_for_its_key_to_be_revoked_before_it_is_resolved(
    app: Flask, github: GitHub, service: Service, clock: Clock
) -> None:
    """GitHub refuses the secret's deletion: the key is not retired, so the alert stays open,
    looked at again after the worker's backoff (no failed attempt counted), and is resolved
    once the key is."""
    lease_id, alert = leased_and_found(github, service)
    github.sandbox.inject_fault("DELETE", r"/actions/secrets/", status=502, times=None)
    assert _post(app, _delivery(github, alert), github.app.webhook_secret).status_code == 200
    RevocationWorker(service).run_once()
    assert stored(service.ledger, lease_id).state.value != "revoked"
    assert alert.state == "open"
    with service.ledger.begin() as conn:
        (row,) = conn.execute(select(tables.secret_alerts)).all()
    assert (row.state, row.attempts, row.claim_token) == ("matched", 0, None)
    assert row.next_attempt_at == clock.now + service.config.worker.backoff_base
    github.sandbox.clear_faults()
    clock.advance(minutes=30)
    RevocationWorker(service).drain()
    assert stored(service.ledger, lease_id).state.value == "revoked"
    assert (alert.state, alert.resolution) == ("resolved", "revoked")


def leased_and_found(github: GitHub, service: Service) -> tuple[str, SecretScanningAlert]:
    """A live lease and an alert raised on its value (nothing delivered yet)."""
    value = mint()
    lease_id = lease_with(github, service, value)
    return lease_id, github.sandbox.raise_secret_alert(github.repo, value)


def _delivery(github: GitHub, alert: SecretScanningAlert, **changes: Any) -> dict[str, Any]:
    payload = payloads.secret_scanning_alert(
        github.sandbox, github.repo, alert, github.installation
    )
    payload["alert"].update(changes)
    return payload


def _post(app: Flask, payload: dict[str, Any], secret: str | None) -> Any:
    data = webhooks.encode(payload)
    headers = webhooks.delivery_headers(
        "secret_scanning_alert", data, secret=secret, delivery_id=webhooks.new_delivery_id()
    )
    return app.test_client().post("/webhook", data=data, headers=headers)


def _alert_rows(service: Service) -> int:
    with service.ledger.begin() as conn:
        return len(conn.execute(select(tables.secret_alerts)).all())


def test_forged_and_unsigned_deliveries_record_nothing(
    app: Flask, github: GitHub, service: Service
) -> None:
    lease_id, alert = leased_and_found(github, service)
    secret = github.app.webhook_secret
    forged = secret[:-1] + ("x" if secret[-1] != "x" else "y")
    for key in (forged, None):
        answer = _post(app, _delivery(github, alert), key)
        assert answer.status_code == 401
    RevocationWorker(service).drain()
    assert _alert_rows(service) == 0
    assert stored(service.ledger, lease_id).state.value == "active"
    assert alert.state == "open"


@pytest.mark.parametrize("number", [0, -1, 2**31, 2**63, "1", True, None, 1.5])
def test_an_alert_number_out_of_range_is_refused(
    app: Flask, github: GitHub, service: Service, number: Any
) -> None:
    alert = github.sandbox.raise_secret_alert(github.repo, mint())
    answer = _post(app, _delivery(github, alert, number=number), github.app.webhook_secret)
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "bad_delivery"
    assert "alert.number" in answer.get_json()["message"]
    assert _alert_rows(service) == 0


def test_an_alert_github_does_not_know_is_retried_then_given_up(
    app: Flask, github: GitHub, service: Service, clock: Clock
) -> None:
    """GitHub answers 404 (an alert not readable yet, or gone): backed off as a lease is, then
    `failed` after the attempts allowed, still tried slowly; the webhook answered 200."""
    alert = github.sandbox.raise_secret_alert(github.repo, mint())
    answer = _post(app, _delivery(github, alert, number=999), github.app.webhook_secret)
    assert answer.status_code == 200
    worker = RevocationWorker(service)
    for attempt in (1, 2, 3):
        worker.run_once()
        row = alert_row(service, github.repo, 999)
        assert row.attempts == attempt
        assert "404" in (row.last_error or "")
        assert "Secret Scanning Alerts: read" in (row.last_error or "")
        with service.ledger.begin() as conn:
            (due,) = conn.execute(
                select(tables.secret_alerts.c.next_attempt_at).where(
                    tables.secret_alerts.c.number == 999
                )
            ).one()
        assert due > clock()
        if attempt < 3:
            assert row.state is AlertState.PENDING
            clock.now = due
    assert row.state is AlertState.FAILED
    assert due == clock() + service.config.worker.failed_retry  # still tried, slowly


def test_github_failing_then_answering(
    served: str, github: GitHub, service: Service, clock: Clock, logs: io.StringIO
) -> None:
    """A 502 on the fetch, then one on the resolve: each backs off, nothing is lost, the key
    is retired and the alert resolved once GitHub answers."""
    value = mint()
    lease_id = lease_with(github, service, value)
    github.sandbox.inject_fault("GET", r"/secret-scanning/alerts/\d+$", status=502)
    alert, _ = raise_alert(github, github.repo, value)
    worker = RevocationWorker(service)
    worker.run_once()
    row = alert_row(service, github.repo, alert.number)
    assert (row.state, row.attempts) == (AlertState.PENDING, 1)
    assert "502" in (row.last_error or "")
    assert stored(service.ledger, lease_id).state.value == "active"
    github.sandbox.inject_fault("PATCH", r"/secret-scanning/alerts/\d+$", status=503)
    clock.advance(minutes=5)
    worker.run_once()
    assert stored(service.ledger, lease_id).state.value == "revoked"
    row = alert_row(service, github.repo, alert.number)
    assert (row.state, row.attempts) == (AlertState.MATCHED, 2)
    assert alert.state == "open"
    clock.advance(minutes=5)
    worker.run_once()
    assert (alert.state, alert.resolution) == ("resolved", "revoked")
    assert alert_row(service, github.repo, alert.number).outcome is Outcome.RETIRED
    assert_no_value(service, logs.getvalue(), value)


def test_githubs_retry_after_holds_back_the_next_look(
    app: Flask, github: GitHub, service: Service, clock: Clock
) -> None:
    _, alert = leased_and_found(github, service)
    github.sandbox.inject_fault("GET", r"/secret-scanning/alerts/\d+$", status=429, retry_after=600)
    assert _post(app, _delivery(github, alert), github.app.webhook_secret).status_code == 200
    failed_at = clock()
    RevocationWorker(service).run_once()
    with service.ledger.begin() as conn:
        (due,) = conn.execute(select(tables.secret_alerts.c.next_attempt_at)).one()
    assert due == failed_at + timedelta(seconds=600)
    assert alert_row(service, github.repo, alert.number).state is AlertState.PENDING


def test_an_alert_resolved_by_someone_else_meanwhile_is_done(
    served: str, github: GitHub, service: Service
) -> None:
    value = mint()
    lease_id = lease_with(github, service, value)
    alert, _ = raise_alert(github, github.repo, value)
    worker = RevocationWorker(service)
    worker.alerts.check()
    alert.state, alert.resolution = "resolved", "false_positive"  # a person was quicker
    worker.run_once()
    assert stored(service.ledger, lease_id).state.value == "revoked"
    assert alert_row(service, github.repo, alert.number).outcome is Outcome.RETIRED
    assert (alert.resolution, alert.resolution_comment) == ("false_positive", None)  # theirs
    mine = f"/repos/{github.repo.full_name}/"
    assert not [r for r in github.sandbox.requests if r.method == "PATCH" and mine in r.path]


def test_a_redelivery_is_a_duplicate_and_a_reopened_alert_is_looked_at_again(
    app: Flask, github: GitHub, service: Service
) -> None:
    lease_id, alert = leased_and_found(github, service)
    data = webhooks.encode(_delivery(github, alert))
    headers = webhooks.delivery_headers(
        "secret_scanning_alert", data, secret=github.app.webhook_secret, delivery_id="d-1"
    )
    client = app.test_client()
    assert client.post("/webhook", data=data, headers=headers).get_json()["outcome"] == "queued"
    assert client.post("/webhook", data=data, headers=headers).get_json()["outcome"] == "duplicate"
    RevocationWorker(service).drain()
    assert stored(service.ledger, lease_id).state.value == "revoked"
    assert alert.state == "resolved"
    # Reopened by a person: looked at again, its key retired already, left open.
    alert.state, alert.resolution = "open", None
    reopened = _delivery(github, alert)
    reopened["action"] = "reopened"
    assert _post(app, reopened, github.app.webhook_secret).status_code == 200
    RevocationWorker(service).drain()
    assert alert.state == "open"
    assert alert_row(service, github.repo, alert.number).outcome is Outcome.RETIRED_ALREADY


# --- the ledger's part, on both engines --------------------------------------------------------


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_only_the_deliverys_repository_and_installation_match(ledger: Ledger) -> None:
    """The same value in a sibling repository, or in this repository under another
    installation (a lease the installation never held): neither matches; no installation
    recorded on the lease (older rows) matches its repository."""
    value = mint()
    own = put(ledger, identity(), with_value(value), installation_id=5)
    sibling = put(ledger, identity("octo/other", 1296270), with_value(value), installation_id=5)
    elsewhere = put(ledger, identity(), with_value(value), installation_id=6)
    unknown = put(ledger, identity(), with_value(value), installation_id=None)
    with ledger.begin() as conn:
        found = matching_leases(
            conn, repository_id=1296269, installation_id=5, fingerprints=[fingerprint(value)]
        )
        near = matching_leases(
            conn,
            repository_id=1296269,
            installation_id=5,
            fingerprints=[fingerprint(last_char_changed(value))],
        )
    assert sorted(found.live) == sorted(own + unknown)
    assert not set(found.live) & set(sibling + elsewhere)
    assert near == Matches()


def with_value(value: str) -> Any:
    return replace_fingerprint(lease(), value)


def test_a_secret_part_matches_in_the_deliverys_repository_and_installation_only(
    ledger: Ledger,
) -> None:
    """A lease matched by its password's fingerprint, scoped as a value is: not a sibling
    repository's lease with that password, nor one of another installation."""
    url, password = database_key()
    leased = with_password(with_value(url), password)
    own = put(ledger, identity(), leased, installation_id=5)
    sibling = put(ledger, identity("octo/other", 1296270), with_password(lease(), password))
    elsewhere = put(ledger, identity(), with_password(lease(), password), installation_id=6)
    with ledger.begin() as conn:

        def match(*prints: str, repository_id: int = 1296269) -> Matches:
            return matching_leases(
                conn, repository_id=repository_id, installation_id=5, fingerprints=prints
            )

        by_part = match(fingerprint(password))
        near = match(fingerprint(last_char_changed(password)))
        theirs = match(fingerprint(password), repository_id=1296270)
    assert by_part == Matches(live=tuple(own))
    assert near == Matches()
    assert theirs == Matches(live=tuple(sibling))
    assert not set(by_part.live) & set(sibling + elsewhere)


def test_a_lease_being_retired_matches_as_retiring(ledger: Ledger) -> None:
    value = mint()
    (queued,) = put(ledger, identity(), with_value(value))
    with ledger.begin() as conn:
        queue(conn, LeasesById((queued,)), actor="test", reason="run over", now=NOW)
        found = matching_leases(
            conn, repository_id=1296269, installation_id=5, fingerprints=[fingerprint(value)]
        )
    assert found == Matches(retiring=(queued,))


def test_all_revoked_counts_the_alerts_leases_only(ledger: Ledger) -> None:
    """Resolving waits for every lease the alert matched, and for no other lease."""
    revoked, active, bystander = (put(ledger, identity(), lease())[0] for _ in range(3))
    with ledger.begin() as conn:
        ledger_leases = tables.leases
        conn.execute(
            ledger_leases.update()
            .where(ledger_leases.c.id == revoked)
            .values(state=LeaseState.REVOKED.value)
        )
        assert all_revoked(conn, []) is True
        assert all_revoked(conn, [revoked]) is True  # the bystander is still active
        assert all_revoked(conn, [active]) is False
        assert all_revoked(conn, [revoked, active]) is False
    assert bystander


def test_alerts_of_two_repositories_with_one_number_are_two_alerts(ledger: Ledger) -> None:
    """GitHub numbers alerts per repository: finishing one touches neither the other
    repository's alert of that number nor another alert of the same repository."""
    hold = timedelta(seconds=30)
    with ledger.begin() as conn:
        for check in (
            AlertCheck(1296269, "octo/app", 1, 5),
            AlertCheck(1296270, "octo/other", 1, 5),
            AlertCheck(1296269, "octo/app", 2, 5),
        ):
            record_alert(conn, check, reason="created", now=NOW)
        token, claimed = claim_alerts(conn, now=NOW, limit=5, hold=hold)
        (first,) = [a for a in claimed if (a.repository_id, a.number) == (1296269, 1)]
        assert finish_alert(conn, first, token, state=AlertState.DONE, now=NOW) is True
        states = {key: get_alert(conn, *key) for key in ((1296269, 1), (1296270, 1), (1296269, 2))}
    assert {key: a.state if a else None for key, a in states.items()} == {
        (1296269, 1): AlertState.DONE,
        (1296270, 1): AlertState.PENDING,
        (1296269, 2): AlertState.PENDING,
    }


def test_a_new_delivery_sets_a_worked_alert_back_to_pending_and_drops_a_claim(
    ledger: Ledger,
) -> None:
    check = AlertCheck(1296269, "octo/app", 4, 5)
    with ledger.begin() as conn:
        record_alert(conn, check, reason="first", now=NOW)
        token, (claimed,) = claim_alerts(conn, now=NOW, limit=5, hold=timedelta(seconds=30))
        assert claim_alerts(conn, now=NOW, limit=5, hold=timedelta(seconds=30))[1] == []
        record_alert(conn, check, reason="again", now=NOW + timedelta(seconds=1))
        # the first claim is gone: its holder's result would be of the older look
        done = finish_alert(conn, claimed, token, state=AlertState.DONE, now=NOW)
        assert done is False
        again = get_alert(conn, 1296269, 4)
        assert again is not None
        assert (again.state, again.reason, again.attempts) == (AlertState.PENDING, "again", 0)
        assert due_alerts(conn, now=NOW + timedelta(seconds=1)) == 1
