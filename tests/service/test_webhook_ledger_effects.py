"""What a delivery leaves in the ledger and says back, to the field: how many leases it
queued, which environments it marks out of reach and when, what it records of a delivery, of a
secret scanning alert and of a run's log scan, and the exact refusal of a payload field out of
the ledger's range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from handler.events import Decision, Outcome, Retirement, Router
from handler.intake import apply_delivery
from handler.ledger import Ledger, tables
from handler.ledger.queue import RunLeases
from handler.webhooks import Delivery, sign
from runkeys_sandbox.server import webhooks
from tests.service import kit
from tests.service.kit import Clock, identity, js, put, states

SECRET = "It's a Secret to Everybody"
MOMENT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def send(client: FlaskClient, event: str, payload: Any, **headers: str) -> TestResponse:
    body = webhooks.encode(payload)
    sent = webhooks.delivery_headers(
        event, body, secret=SECRET, delivery_id=webhooks.new_delivery_id()
    )
    return client.post("/webhook", data=body, headers={**sent, **headers})


def ledger_of(app: Flask) -> Ledger:
    ledger: Ledger = app.extensions["runkeys"].ledger
    return ledger


def environment_rows(ledger: Ledger) -> list[tuple[int, str, str, datetime | None]]:
    with ledger.begin() as conn:
        rows = conn.execute(
            select(
                tables.environments.c.repository_id,
                tables.environments.c.name,
                tables.environments.c.state,
                tables.environments.c.deleted_at,
            ).order_by(tables.environments.c.repository_id)
        ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def test_a_ping_queues_nothing(client: FlaskClient) -> None:
    assert js(send(client, "ping", kit.ping())) == {"outcome": "pong", "queued": 0}


def test_a_delivery_with_a_charset_in_its_content_type_is_read(client: FlaskClient) -> None:
    response = send(
        client, "ping", kit.ping(), **{"Content-Type": "application/json; charset=utf-8"}
    )
    assert (response.status_code, js(response)["outcome"]) == (200, "pong")


def test_removed_repositories_environments_are_out_of_reach_from_the_deliverys_time(
    app: Flask, client: FlaskClient, clock: Clock
) -> None:
    ledger = ledger_of(app)
    clock.now = MOMENT
    put(
        ledger,
        identity(),
        kit.lease(environment="ci-gone", environment_created=True),
        now=MOMENT - timedelta(hours=1),
    )
    put(
        ledger,
        identity("octo/lib", 77, run_id=5),
        kit.lease(repository="octo/lib", environment="ci-kept", environment_created=True),
        now=MOMENT - timedelta(hours=1),
    )
    payload = kit.installation_repositories_removed(5, 583231, "octo", [(1296269, "octo/app")])
    assert js(send(client, "installation_repositories", payload))["queued"] == 1
    assert environment_rows(ledger) == [
        (77, "ci-kept", "present", None),
        (1296269, "ci-gone", "unreachable", MOMENT),
    ]


def test_an_uninstalls_count_adds_the_listed_repositories_leases_to_the_installations(
    app: Flask, client: FlaskClient
) -> None:
    """The listed repositories select a lease the installation does not: one registered before
    the service knew the installation, under another account."""
    ledger = ledger_of(app)
    (mine,) = put(ledger, identity(), kit.lease(), installation_id=5)
    (listed,) = put(
        ledger,
        identity("zed/app", 79, run_id=7, owner_id=1),
        kit.lease(repository="zed/app"),
        installation_id=None,
    )
    payload = kit.installation_deleted(5, 583231, "octo", [(79, "zed/app")])
    assert js(send(client, "installation", payload))["queued"] == 2
    assert states(ledger, [mine, listed]) == {mine: "revoking", listed: "revoking"}


def test_a_recorded_delivery_keeps_its_event_and_action(app: Flask, client: FlaskClient) -> None:
    payload = kit.pull_request_closed(1296269, "octo/app", 12, 5)
    assert send(client, "pull_request", payload).status_code == 200
    with ledger_of(app).begin() as conn:
        recorded = conn.execute(select(tables.deliveries.c.event, tables.deliveries.c.action)).all()
    assert [tuple(r) for r in recorded] == [("pull_request", "closed")]


def test_a_secret_scanning_alert_is_recorded_for_the_worker_due_at_once(
    app: Flask, client: FlaskClient, clock: Clock
) -> None:
    """The alert's row, to the field, under the longest repository name a delivery may carry
    (200 characters, the column's); the response counts it as the one thing queued."""
    clock.now = MOMENT
    longest = "o/" + "a" * 198
    payload = kit.secret_scanning_alert(1296269, longest, 42, 5, action="publicly_leaked")
    response = send(client, "secret_scanning_alert", payload, **{"X-GitHub-Delivery": "d-42"})
    assert js(response) == {"outcome": "queued", "queued": 1}
    alerts = tables.secret_alerts
    with ledger_of(app).begin() as conn:
        rows = conn.execute(select(alerts).order_by(alerts.c.number)).mappings().all()
    assert [dict(row) for row in rows] == [
        {
            "repository_id": 1296269,
            "number": 42,
            "repository": longest,
            "installation_id": 5,
            "state": "pending",
            "outcome": None,
            "lease_ids": [],
            "html_url": None,
            "reason": "webhook secret_scanning_alert.publicly_leaked delivery d-42",
            "attempts": 0,
            "next_attempt_at": MOMENT,
            "last_error": None,
            "claim_token": None,
            "claimed_until": None,
            "received_at": MOMENT,
            "updated_at": MOMENT,
        }
    ]


def scan_rows(ledger: Ledger) -> list[tuple[int, int, int, int | None, str, datetime | None]]:
    scans = tables.log_scans
    with ledger.begin() as conn:
        rows = conn.execute(
            select(
                scans.c.repository_id,
                scans.c.run_id,
                scans.c.run_attempt,
                scans.c.installation_id,
                scans.c.state,
                scans.c.next_attempt_at,
            ).order_by(scans.c.run_id)
        ).all()
    return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


def test_a_completed_runs_log_scan_is_queued_in_the_deliverys_installation(
    app: Flask, client: FlaskClient, clock: Clock
) -> None:
    """The scan fetches the run's logs as the installation the signed delivery names."""
    ledger = ledger_of(app)
    clock.now = MOMENT
    put(ledger, identity(run_id=30433642), kit.lease(), installation_id=87, now=MOMENT)
    payload = kit.workflow_run_completed(1296269, "octo/app", 30433642, 1, 87)
    assert js(send(client, "workflow_run", payload)) == {"outcome": "queued", "queued": 1}
    assert scan_rows(ledger) == [(1296269, 30433642, 1, 87, "queued", MOMENT)]


def test_a_decision_retiring_two_runs_counts_the_live_leases_of_both(app: Flask) -> None:
    """No route makes such a decision today; `apply_delivery` takes any (its count sums)."""
    ledger = ledger_of(app)
    put(ledger, identity(run_id=11), kit.lease(key_name="FIRST"), installation_id=87)
    put(ledger, identity(run_id=12), kit.lease(key_name="SECOND"), installation_id=87)
    runs = tuple(Retirement(RunLeases(1296269, run, 1, installation_id=87)) for run in (11, 12))
    delivery = Delivery(event="workflow_run", delivery_id="d-2", data={"action": "completed"})
    applied = apply_delivery(ledger, delivery, Decision(Outcome.QUEUED, runs), now=MOMENT)
    assert applied == (Outcome.QUEUED, 2)
    assert scan_rows(ledger) == [
        (1296269, 11, 1, 87, "queued", MOMENT),
        (1296269, 12, 1, 87, "queued", MOMENT),
    ]


WHOLE = "a whole number from 1 to"


@pytest.mark.parametrize(
    ("event", "payload", "message"),
    [
        (
            "workflow_run",
            kit.workflow_run_completed(1296269, "octo/app", 30433642, 2**31, 5),
            f"The payload's workflow_run.run_attempt is missing or not {WHOLE} 2147483647",
        ),
        (
            "pull_request",
            kit.pull_request_closed(1296269, "octo/app", 2**31, 5),
            f"The payload's payload.number is missing or not {WHOLE} 2147483647",
        ),
        (
            "workflow_run",
            kit.workflow_run_completed(1296269, "octo/app", 30433642, 1, 2**63),
            f"The payload's installation.id is missing or not {WHOLE} 9223372036854775807",
        ),
        (
            "installation_repositories",
            kit.installation_repositories_removed(5, 583231, "octo", [(0, "octo/app")]),
            f"The payload's repositories_removed[0].id is missing or not {WHOLE} "
            "9223372036854775807",
        ),
    ],
)
def test_a_field_out_of_the_ledgers_range_is_refused_naming_it(
    client: FlaskClient, app: Flask, event: str, payload: dict[str, Any], message: str
) -> None:
    response = send(client, event, payload)
    assert response.status_code == 400
    assert js(response)["message"].startswith(message)
    with ledger_of(app).begin() as conn:
        assert conn.execute(select(tables.deliveries)).all() == []


def test_a_route_reads_the_whole_payload() -> None:
    router = Router()
    seen: list[Any] = []

    @router.register("custom")
    def route(delivery: Delivery) -> Decision:
        seen.append(delivery.data)
        return Decision(Outcome.IGNORED)

    body = b'{"action": null, "deep": {"list": [1, 2]}}'
    headers = {
        "X-Hub-Signature-256": sign(body, SECRET),
        "Content-Type": "application/json",
        "X-GitHub-Event": "custom",
        "X-GitHub-Delivery": "d-1",
    }
    router.dispatch(Delivery.from_http(headers, body, secret=SECRET))
    assert seen == [{"action": None, "deep": {"list": [1, 2]}}]
