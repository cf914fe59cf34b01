"""`POST /webhook` through the Flask test client, on both engines: real signed App deliveries,
tampered ones (401, nothing recorded), redeliveries, routing into the ledger, and the rule that
one installation's webhook never touches another installation's leases."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from handler.app import create_app
from handler.ledger import Ledger, tables
from handler.ledger.completions import apply_completions, pending
from handler.ledger.history import history
from handler.webhooks import sign
from runkeys.leases import Lifetime
from runkeys_sandbox.server import webhooks
from tests.github_data import DELIVERIES_SECRET, recorded_delivery
from tests.service import kit
from tests.service.kit import Clock, assert_documented, identity, js, put, states, stored

REAL_REPO_ID, REAL_INSTALLATION, REAL_OWNER = 1064412804, 87385964, 58641509
# The real `pull_request.closed` delivery's `pull_request.closed_at`, read off the file.
REAL_CLOSED_AT = datetime(2025, 10, 15, 7, 15, 40, tzinfo=UTC)


@pytest.fixture
def signed_app(environ: dict[str, str], clock: Clock) -> Iterator[Flask]:
    """The service configured with the secret of the real recorded deliveries."""
    made = create_app({**environ, "RUNKEYS_WEBHOOK_SECRET": DELIVERIES_SECRET}, clock=clock)
    yield made
    made.extensions["runkeys"].close()


def ledger_of(app: Flask) -> Ledger:
    ledger: Ledger = app.extensions["runkeys"].ledger
    return ledger


def recorded_deliveries(app: Flask) -> int:
    with ledger_of(app).begin() as conn:
        return int(conn.scalar(select(func.count()).select_from(tables.deliveries)) or 0)


def pending_completions(app: Flask) -> int:
    with ledger_of(app).begin() as conn:
        return pending(conn)


def apply_recorded(app: Flask) -> list[str]:
    """What the worker does first in each batch: queue the leases of recorded run completions."""
    with ledger_of(app).begin() as conn:
        return apply_completions(conn)


def deliver(client: FlaskClient, headers: dict[str, str], body: bytes) -> TestResponse:
    response = client.post("/webhook", data=body, headers=headers)
    assert_documented("POST", "/webhook", response.status_code, response.json)
    return response


def pr_lease(
    app: Flask,
    *,
    installation_id: int | None = REAL_INSTALLATION,
    registered_at: datetime = REAL_CLOSED_AT - timedelta(minutes=20),
) -> str:
    """A `pr` lease of the repository and pull request of the real `closed` delivery,
    registered (by default) while the pull request was open."""
    who = identity(
        "derekg1729/test-repo", REAL_REPO_ID, ref="refs/pull/315/merge", owner_id=REAL_OWNER
    )
    item = kit.lease(repository="derekg1729/test-repo", lifetime=Lifetime.PR, now=registered_at)
    return put(ledger_of(app), who, item, installation_id=installation_id, now=registered_at)[0]


@pytest.mark.parametrize(
    ("name", "status", "outcome"),
    [
        ("pull_request.closed", 200, "queued"),
        ("pull_request.opened", 202, "ignored"),
        ("pull_request.synchronize", 202, "ignored"),
        ("workflow_run.in_progress", 202, "ignored"),
        ("check_run.completed", 202, "ignored"),
        ("check_suite.requested", 202, "ignored"),
    ],
)
def test_real_signed_deliveries_are_accepted(
    signed_app: Flask, name: str, status: int, outcome: str
) -> None:
    lease_id = pr_lease(signed_app)
    headers, body = recorded_delivery(name)
    response = deliver(signed_app.test_client(), headers, body)
    assert (response.status_code, js(response)["outcome"]) == (status, outcome)
    # a closed pull request is recorded; an ignored event touches no table (handler/intake.py)
    assert recorded_deliveries(signed_app) == (1 if outcome == "queued" else 0)
    expected = "revoking" if name == "pull_request.closed" else "active"
    assert states(ledger_of(signed_app), [lease_id]) == {lease_id: expected}
    metrics = signed_app.test_client().get("/metrics").get_data(as_text=True)
    event = name.split(".", maxsplit=1)[0]
    line = f'runkeys_webhook_deliveries_total{{event="{event}",outcome="{outcome}"}} 1.0'
    assert line in metrics


def _tampered() -> list[tuple[str, dict[str, str], bytes]]:
    headers, body = recorded_delivery("pull_request.closed")
    without = {k: v for k, v in headers.items() if k != "x-hub-signature-256"}
    good = headers["x-hub-signature-256"]
    altered = body.replace(b'"merged":true', b'"merged":false')
    last = "1" if good[-1] == "0" else "0"
    return [
        ("forged", {**headers, "x-hub-signature-256": "sha256=" + "ab" * 32}, body),
        ("missing", without, body),
        ("truncated-signature", {**headers, "x-hub-signature-256": good[:40]}, body),
        ("truncated-body", headers, body[: len(body) // 2]),
        ("replayed-altered-body", headers, altered),
        ("sha1-only", {**without, "x-hub-signature": headers["x-hub-signature"]}, body),
        ("wrong-secret", {**headers, "x-hub-signature-256": sign(body, "guess")}, body),
        # right in its format and in every hex digit but the last
        ("last-digit", {**headers, "x-hub-signature-256": good[:-1] + last}, body),
    ]


@pytest.mark.parametrize(("case", "headers", "body"), _tampered(), ids=[c for c, *_ in _tampered()])
def test_tampered_deliveries_are_refused_and_nothing_is_recorded(
    signed_app: Flask, case: str, headers: dict[str, str], body: bytes
) -> None:
    lease_id = pr_lease(signed_app)
    client = signed_app.test_client()
    response = deliver(client, headers, body)
    assert (response.status_code, js(response)["error"]) == (401, "invalid_signature")
    assert recorded_deliveries(signed_app) == 0
    assert states(ledger_of(signed_app), [lease_id]) == {lease_id: "active"}
    with ledger_of(signed_app).begin() as conn:
        assert [e.action for e in history(conn, lease_id)] == ["registered"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "runkeys_webhook_signature_failures_total 1.0" in metrics
    # the genuine delivery still works afterwards: the refused one left no trace to dedupe on
    genuine_headers, genuine_body = recorded_delivery("pull_request.closed")
    assert js(deliver(client, genuine_headers, genuine_body))["outcome"] == "queued"


def test_a_redelivery_is_recognised_and_does_nothing(signed_app: Flask) -> None:
    lease_id = pr_lease(signed_app)
    client = signed_app.test_client()
    headers, body = recorded_delivery("pull_request.closed")
    assert deliver(client, headers, body).json == {"outcome": "queued", "queued": 1}
    assert deliver(client, headers, body).json == {"outcome": "duplicate", "queued": 0}
    with ledger_of(signed_app).begin() as conn:
        events = history(conn, lease_id)
    assert [(e.actor, e.action) for e in events] == [
        ("action", "registered"),
        ("webhook", "queued"),
    ]
    assert (
        events[1].detail == f"webhook pull_request.closed delivery {headers['x-github-delivery']}"
    )


def test_a_replayed_close_retires_nothing_a_reopened_pull_request_registered(
    signed_app: Flask,
) -> None:
    """The delivery id is not signed: a captured close sent again under a new id passes the
    signature and the deduplication. Its signed `closed_at` keeps it to the leases registered
    before that close; those of the pull request reopened since stay."""
    before = pr_lease(signed_app)
    # GitHub's `closed_at` is whole seconds: a lease registered in that second came before.
    same_second = pr_lease(signed_app, registered_at=REAL_CLOSED_AT + timedelta(seconds=0.9))
    after = pr_lease(signed_app, registered_at=REAL_CLOSED_AT + timedelta(seconds=1))
    reopened = pr_lease(signed_app, registered_at=REAL_CLOSED_AT + timedelta(days=3))
    client = signed_app.test_client()
    headers, body = recorded_delivery("pull_request.closed")
    assert deliver(client, headers, body).json == {"outcome": "queued", "queued": 2}
    replayed = {**headers, "x-github-delivery": "0f5cc3a0-d0a1-11f0-8f3e-5f1f8e6b0b6b"}
    assert deliver(client, replayed, body).json == {"outcome": "queued", "queued": 0}
    assert states(ledger_of(signed_app), [before, same_second, after, reopened]) == {
        before: "revoking",
        same_second: "revoking",
        after: "active",
        reopened: "active",
    }


def test_a_runs_completion_is_taken_each_time_it_arrives_and_never_deduplicated(
    app: Flask, client: FlaskClient
) -> None:
    """It can only retire what belongs to that run attempt (and earlier ones): a completion
    that finds nothing writes nothing, and a redelivery retires what the run registered late,
    never a later attempt's leases. A completion with leases is one recorded row, which the
    worker applies: the leases are queued then, stamped with the delivery's receipt."""
    ledger = ledger_of(app)
    (other_attempt,) = put(ledger, identity(run_attempt=2), kit.lease())
    payload = kit.workflow_run_completed(1296269, "octo/app", 30433642, 1, 5)
    delivery_id = webhooks.new_delivery_id()
    first = _send(client, SECRET, "workflow_run", payload, delivery_id=delivery_id)
    assert (first.status_code, first.json) == (200, {"outcome": "queued", "queued": 0})
    assert pending_completions(app) == 0
    (late,) = put(ledger, identity(run_attempt=1), kit.lease())
    received = app.extensions["runkeys"].clock()
    again = _send(client, SECRET, "workflow_run", payload, delivery_id=delivery_id)
    assert again.json == {"outcome": "queued", "queued": 1}
    assert (pending_completions(app), states(ledger, [late])) == (1, {late: "active"})
    assert apply_recorded(app) == [late]
    third = _send(client, SECRET, "workflow_run", payload, delivery_id=delivery_id)
    assert third.json == {"outcome": "queued", "queued": 0}
    assert pending_completions(app) == 0
    assert states(ledger, [late, other_attempt]) == {late: "revoking", other_attempt: "active"}
    with ledger.begin() as conn:
        events = history(conn, late)
    assert [(e.action, e.actor) for e in events] == [
        ("registered", "action"),
        ("queued", "webhook"),
    ]
    assert events[1].detail == f"webhook workflow_run.completed delivery {delivery_id}"
    assert events[1].at == received
    assert recorded_deliveries(app) == 0


def test_a_closed_pull_request_is_recorded_even_without_leases(
    app: Flask, client: FlaskClient
) -> None:
    """A pull request can be reopened and get leases again: a redelivery of its old `closed`
    must not retire them, so that delivery is recorded although it retired nothing."""
    ledger = ledger_of(app)
    payload = kit.pull_request_closed(1296269, "octo/app", 12, 5)
    delivery_id = webhooks.new_delivery_id()
    first = _send(client, SECRET, "pull_request", payload, delivery_id=delivery_id)
    assert first.json == {"outcome": "queued", "queued": 0}
    assert recorded_deliveries(app) == 1
    (reopened,) = put(ledger, identity(ref="refs/pull/12/merge"), kit.lease(lifetime=Lifetime.PR))
    again = _send(client, SECRET, "pull_request", payload, delivery_id=delivery_id)
    assert again.json == {"outcome": "duplicate", "queued": 0}
    assert states(ledger, [reopened]) == {reopened: "active"}


def test_ignored_events_and_pings_touch_no_table(app: Flask, client: FlaskClient) -> None:
    assert js(_send(client, SECRET, "ping", kit.ping()))["outcome"] == "pong"
    opened = {**kit.pull_request_closed(1296269, "octo/app", 12, 5), "action": "opened"}
    assert js(_send(client, SECRET, "pull_request", opened))["outcome"] == "ignored"
    assert recorded_deliveries(app) == 0
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'runkeys_webhook_deliveries_total{event="ping",outcome="pong"} 1.0' in metrics
    assert 'runkeys_webhook_deliveries_total{event="pull_request",outcome="ignored"} 1.0' in metrics


def _send(client: FlaskClient, secret: str, event: str, payload: Any, **kw: str) -> TestResponse:
    body = webhooks.encode(payload)
    headers = webhooks.delivery_headers(
        event, body, secret=secret, delivery_id=kw.get("delivery_id", webhooks.new_delivery_id())
    )
    return deliver(client, headers, body)


SECRET = "It's a Secret to Everybody"


def test_ping_pongs(client: FlaskClient) -> None:
    response = _send(client, SECRET, "ping", kit.ping())
    assert (response.status_code, js(response)["outcome"]) == (200, "pong")


def test_workflow_run_completed_retires_run_and_missed_job_leases(
    app: Flask, client: FlaskClient
) -> None:
    ledger = ledger_of(app)
    attempt_1, attempt_2 = identity(run_attempt=1), identity(run_attempt=2)
    run_1, ttl_1 = put(
        ledger,
        attempt_1,
        kit.lease(lifetime=Lifetime.RUN),
        kit.lease(key_name="ROTATED", lifetime=Lifetime.TTL),
    )
    job_2, run_2 = put(
        ledger, attempt_2, kit.lease(lifetime=Lifetime.JOB), kit.lease(lifetime=Lifetime.RUN)
    )
    (pr,) = put(ledger, identity(ref="refs/pull/3/merge"), kit.lease(lifetime=Lifetime.PR))
    (later_run,) = put(ledger, identity(run_id=99), kit.lease())
    payload = kit.workflow_run_completed(1296269, "octo/app", 30433642, 1, 5)
    assert _send(client, SECRET, "workflow_run", payload).json == {"outcome": "queued", "queued": 1}
    apply_recorded(app)
    assert states(ledger, [run_1, ttl_1, job_2, run_2]) == {
        run_1: "revoking",
        ttl_1: "active",  # only its TTL ends it
        job_2: "active",
        run_2: "active",
    }
    payload = kit.workflow_run_completed(1296269, "octo/app", 30433642, 2, 5)
    assert js(_send(client, SECRET, "workflow_run", payload))["queued"] == 2
    apply_recorded(app)
    assert states(ledger, [job_2, run_2, pr, later_run]) == {
        job_2: "revoking",
        run_2: "revoking",
        pr: "active",
        later_run: "active",
    }


def test_pull_request_closed_retires_pr_leases_only(app: Flask, client: FlaskClient) -> None:
    ledger = ledger_of(app)
    who = identity(ref="refs/pull/12/merge")
    pr, run, ttl = put(
        ledger,
        who,
        kit.lease(lifetime=Lifetime.PR),
        kit.lease(lifetime=Lifetime.RUN),
        kit.lease(key_name="ROTATED", lifetime=Lifetime.TTL),
    )
    (other_pr,) = put(ledger, identity(ref="refs/pull/13/merge"), kit.lease(lifetime=Lifetime.PR))
    _send(client, SECRET, "pull_request", kit.pull_request_closed(1296269, "octo/app", 12, 5))
    assert states(ledger, [pr, run, ttl, other_pr]) == {
        pr: "revoking",
        run: "active",
        ttl: "active",
        other_pr: "active",
    }


def test_a_webhook_never_touches_another_installations_leases(
    app: Flask, client: FlaskClient
) -> None:
    ledger = ledger_of(app)
    (mine,) = put(
        ledger,
        identity(ref="refs/pull/12/merge"),
        kit.lease(lifetime=Lifetime.PR),
        installation_id=5,
    )
    (run_lease,) = put(ledger, identity(), kit.lease(), installation_id=5)
    other = 6
    _send(client, SECRET, "pull_request", kit.pull_request_closed(1296269, "octo/app", 12, other))
    _send(
        client,
        SECRET,
        "workflow_run",
        kit.workflow_run_completed(1296269, "octo/app", 30433642, 1, other),
    )
    _send(
        client,
        SECRET,
        "installation",
        kit.installation_deleted(other, 424242, "someone", [(1296269, "octo/app")]),
    )
    removed = kit.installation_repositories_removed(
        other, 424242, "someone", [(1296269, "octo/app")]
    )
    _send(client, SECRET, "installation_repositories", removed)
    assert states(ledger, [mine, run_lease]) == {mine: "active", run_lease: "active"}


def test_an_uninstalled_app_retires_every_lease_of_the_installation_at_the_provider(
    app: Flask, client: FlaskClient
) -> None:
    ledger = ledger_of(app)
    env_lease = kit.lease(environment="ci-run-1", environment_created=True)
    (first,) = put(ledger, identity(), env_lease, installation_id=5)
    (second,) = put(
        ledger,
        identity("octo/lib", 77, run_id=5),
        kit.lease(repository="octo/lib"),
        installation_id=5,
    )
    (unknown,) = put(
        ledger,
        identity("octo/new", 78, run_id=6),
        kit.lease(repository="octo/new"),
        installation_id=None,
    )
    (elsewhere,) = put(
        ledger,
        identity("zed/app", 79, run_id=7, owner_id=1),
        kit.lease(repository="zed/app"),
        installation_id=None,
    )
    payload = kit.installation_deleted(5, 583231, "octo", [])
    assert js(_send(client, SECRET, "installation", payload))["queued"] == 3
    retired = [stored(ledger, i) for i in (first, second, unknown)]
    untouched = stored(ledger, elsewhere)
    with ledger.begin() as conn:
        environments = conn.execute(select(tables.environments)).mappings().all()
    assert all(r.state.value == "revoking" and r.provider_only for r in retired)
    assert untouched.state.value == "active"
    assert [e["state"] for e in environments] == ["unreachable"]


def test_removed_repositories_retire_their_leases_at_the_provider(
    app: Flask, client: FlaskClient
) -> None:
    ledger = ledger_of(app)
    (gone,) = put(ledger, identity(), kit.lease(), installation_id=5)
    (kept,) = put(
        ledger,
        identity("octo/lib", 77, run_id=5),
        kit.lease(repository="octo/lib"),
        installation_id=5,
    )
    payload = kit.installation_repositories_removed(5, 583231, "octo", [(1296269, "octo/app")])
    assert js(_send(client, SECRET, "installation_repositories", payload))["queued"] == 1
    assert states(ledger, [gone, kept]) == {gone: "revoking", kept: "active"}


def test_the_body_size_is_limited(environ: dict[str, str], clock: Clock) -> None:
    small = create_app({**environ, "RUNKEYS_WEBHOOK_MAX_BYTES": "2048"}, clock=clock)
    payload = {**kit.ping(), "padding": "x" * 4096}
    response = _send(small.test_client(), SECRET, "ping", payload)
    assert (response.status_code, js(response)["error"]) == (413, "request_entity_too_large")
    small.extensions["runkeys"].close()


def test_a_chunked_delivery_is_read_whole(client: FlaskClient, app: Flask) -> None:
    """Without a Content-Length (chunked transfer; gunicorn decodes it and says the input ends),
    the body is read to its end as werkzeug reads it: the same checks, the same answer."""
    body = webhooks.encode(kit.ping())
    headers = webhooks.delivery_headers("ping", body, secret=SECRET, delivery_id="chunked-1")
    response = client.post(
        "/webhook",
        input_stream=io.BytesIO(body),
        headers={**headers, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert (response.status_code, js(response)["outcome"]) == (200, "pong")
    forged = {**headers, "X-Hub-Signature-256": sign(body, "not the secret")}
    response = client.post(
        "/webhook",
        input_stream=io.BytesIO(body),
        headers={**forged, "Transfer-Encoding": "chunked"},
    )
    assert response.status_code == 401


def test_a_routed_field_of_the_wrong_shape_is_a_bad_delivery(client: FlaskClient) -> None:
    payload = {**kit.workflow_run_completed(7, "o/r", 1, 1, 5), "workflow_run": "42"}
    response = _send(client, SECRET, "workflow_run", payload)
    assert response.status_code == 400
    assert "'workflow_run'" in js(response)["message"]


def test_fields_no_route_reads_are_not_looked_at(client: FlaskClient) -> None:
    """An event without a route is answered `ignored` however odd its other fields are; only
    its action and installation are read."""
    payload = {"action": "created", "repository": "not an object", "workflow_run": [1]}
    response = _send(client, SECRET, "check_run", payload)
    assert (response.status_code, js(response)["outcome"]) == (202, "ignored")


def test_only_json_is_read(client: FlaskClient, app: Flask) -> None:
    body = b"payload=%7B%7D"
    headers = webhooks.delivery_headers("ping", body, secret=SECRET, delivery_id="form-1")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    response = deliver(client, headers, body)
    assert response.status_code == 415
    assert "application/json" in js(response)["message"]
    assert recorded_deliveries(app) == 0


def test_unknown_paths_and_methods_answer_in_the_error_shape(client: FlaskClient) -> None:
    assert js(client.get("/webhook"))["error"] == "method_not_allowed"
    missing = js(client.get("/nowhere"))
    assert missing["error"] == "not_found"
    assert set(missing) == {"error", "message"}
