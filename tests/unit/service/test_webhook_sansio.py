"""Webhook verification and routing without I/O: GitHub's own test vector, real signed App
deliveries, and payloads built from GitHub's examples and checked against the official schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from handler.events import ALERT_ACTIONS, Decision, Outcome, Retirement, Router, router
from handler.ledger.alerts import AlertCheck
from handler.ledger.queue import InstallationLeases, PullRequestLeases, RepositoryLeases, RunLeases
from handler.webhooks import BadDeliveryError, Delivery, sign, validate_signature
from runkeys.errors import AuthError
from tests.github_data import (
    DELIVERIES_SECRET,
    recorded_deliveries,
    recorded_delivery,
    webhook_schema,
)
from tests.service import kit

SIGNED_DELIVERIES = recorded_deliveries()


def test_githubs_documented_test_vector() -> None:
    """docs.github.com, "Validating webhook deliveries": the secret and payload below."""
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(body, secret) == expected
    validate_signature(body, signature=expected, secret=secret)


@pytest.mark.parametrize("path", SIGNED_DELIVERIES, ids=lambda p: p.name.split(".body")[0])
def test_real_app_deliveries_verify(path: Path) -> None:
    headers, body = recorded_delivery(path)
    delivery = Delivery.from_http(headers, body, secret=DELIVERIES_SECRET)
    assert delivery.event == headers["x-github-event"]
    assert delivery.delivery_id == headers["x-github-delivery"]
    assert delivery.installation_id == 87385964


def _tampered() -> list[tuple[str, Any]]:
    headers, body = recorded_delivery("pull_request.closed")
    good = headers["x-hub-signature-256"]
    altered = body.replace(b'"merged":true', b'"merged":false')
    assert altered != body
    return [
        ("forged", (body, "sha256=" + "0" * 64)),
        ("missing", (body, None)),
        ("empty", (body, "")),
        ("truncated", (body, good[:-2])),
        ("sha1-only", (body, headers["x-hub-signature"])),
        ("uppercase-hex", (body, good.upper())),
        ("altered-body", (altered, good)),
        ("truncated-body", (body[:-1], good)),
        ("other-secret", (body, sign(body, "not the secret"))),
        ("last-digit", (body, last_digit_changed(good))),
        ("first-digit", (body, good[:7] + other_hex(good[7]) + good[8:])),
    ]


def other_hex(digit: str) -> str:
    return "1" if digit == "0" else "0"


def last_digit_changed(signature: str) -> str:
    """The signature right in its format and in all but its last hex digit."""
    return signature[:-1] + other_hex(signature[-1])


def test_a_signature_wrong_only_in_its_last_digit_is_refused() -> None:
    """A comparison of a prefix (the first bytes of the digest) would take this one."""
    headers, body = recorded_delivery("pull_request.closed")
    good = headers["x-hub-signature-256"]
    forged = last_digit_changed(good)
    assert (len(forged), forged[:-1], forged == good) == (len(good), good[:-1], False)
    validate_signature(body, signature=good, secret=DELIVERIES_SECRET)
    with pytest.raises(AuthError) as caught:
        validate_signature(body, signature=forged, secret=DELIVERIES_SECRET)
    assert caught.value.cause == "The X-Hub-Signature-256 signature does not match the body"


@pytest.mark.parametrize(("case", "given"), _tampered(), ids=[c for c, _ in _tampered()])
def test_tampered_deliveries_fail_closed(case: str, given: tuple[bytes, str | None]) -> None:
    body, signature = given
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "pull_request"}
    headers["X-GitHub-Delivery"] = "d1"
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    with pytest.raises(AuthError):
        Delivery.from_http(headers, body, secret=DELIVERIES_SECRET)


def test_without_a_secret_nothing_is_trusted() -> None:
    body = b"{}"
    with pytest.raises(AuthError, match="No webhook secret"):
        validate_signature(body, signature=sign(body, ""), secret="")


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"payload=%7B%7D", 415),
        ({"X-GitHub-Event": ""}, b"{}", 400),
        ({"X-GitHub-Delivery": ""}, b"{}", 400),
        ({"X-GitHub-Delivery": "x" * 65}, b"{}", 400),
        ({}, b"{not json", 400),
        ({}, b"[1, 2]", 400),
        ({}, b"\xff\xfe", 400),
    ],
    ids=["form", "no-event", "no-delivery", "long-delivery", "not-json", "not-object", "bytes"],
)
def test_signed_but_unreadable_deliveries_are_refused(
    headers: dict[str, str], body: bytes, status: int
) -> None:
    sent = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "abc-123",
        **headers,
        "X-Hub-Signature-256": sign(body, "s3cret"),
    }
    with pytest.raises(BadDeliveryError) as caught:
        Delivery.from_http(sent, body, secret="s3cret")
    assert caught.value.status == status


# --- routing ----------------------------------------------------------------------------------


def _delivery(event: str, payload: dict[str, Any]) -> Delivery:
    return Delivery(event=event, delivery_id="d-1", data=payload)


@pytest.mark.parametrize(
    ("schema", "payload"),
    [
        ("workflow-run-completed", kit.workflow_run_completed(7, "octo/app", 30433642, 2, 5)),
        ("pull-request-closed", kit.pull_request_closed(7, "octo/app", 12, 5)),
        ("installation-deleted", kit.installation_deleted(5, 9, "octo", [(7, "octo/app")])),
        (
            "installation-repositories-removed",
            kit.installation_repositories_removed(5, 9, "octo", [(7, "octo/app"), (8, "octo/b")]),
        ),
        ("ping", kit.ping()),
        *(
            (f"secret-scanning-alert-{action.replace('_', '-')}", payload)
            for action in ALERT_ACTIONS
            for payload in [kit.secret_scanning_alert(7, "octo/app", 3, 5, action=action)]
        ),
    ],
)
def test_built_payloads_match_the_official_schemas(schema: str, payload: dict[str, Any]) -> None:
    webhook_schema(schema).validate(payload)


def test_workflow_run_completed_retires_that_run_through_its_attempt() -> None:
    payload = kit.workflow_run_completed(7, "octo/app", 30433642, 2, 5)
    decision = router.dispatch(_delivery("workflow_run", payload))
    assert decision == Decision(
        Outcome.QUEUED, (Retirement(RunLeases(7, 30433642, 2, installation_id=5)),)
    )


def test_pull_request_closed_retires_its_pr_leases() -> None:
    closed_at = datetime(2026, 5, 1, 12, 30, 5, tzinfo=UTC)
    payload = kit.pull_request_closed(7, "octo/app", 12, 5, closed_at=closed_at)
    assert payload["pull_request"]["closed_at"] == "2026-05-01T12:30:05Z"
    decision = router.dispatch(_delivery("pull_request", payload))
    assert decision.retirements == (
        Retirement(
            PullRequestLeases(
                7,
                12,
                registered_before=datetime(2026, 5, 1, 12, 30, 6, tzinfo=UTC),
                installation_id=5,
            )
        ),
    )


@pytest.mark.parametrize("closed_at", [None, "", "yesterday", 1557933678, "2019-05-15T15:21:18"])
def test_a_closed_pull_request_without_a_closing_time_is_a_bad_delivery(closed_at: Any) -> None:
    """A close without its signed time cannot say which leases it may retire."""
    payload = kit.pull_request_closed(7, "octo/app", 12, 5)
    payload["pull_request"]["closed_at"] = closed_at
    with pytest.raises(BadDeliveryError, match=r"pull_request\.closed_at"):
        router.dispatch(_delivery("pull_request", payload))


def test_an_uninstalled_app_retires_at_the_provider_only() -> None:
    payload = kit.installation_deleted(5, 9, "octo", [(7, "octo/app"), (8, "octo/b")])
    decision = router.dispatch(_delivery("installation", payload))
    assert decision.retirements == (
        Retirement(InstallationLeases(5, account_id=9), provider_only=True),
        Retirement(RepositoryLeases((7, 8), installation_id=5), provider_only=True),
    )


def test_removed_repositories_retire_at_the_provider_only() -> None:
    payload = kit.installation_repositories_removed(5, 9, "octo", [(8, "octo/b")])
    decision = router.dispatch(_delivery("installation_repositories", payload))
    assert decision.retirements == (
        Retirement(RepositoryLeases((8,), installation_id=5), provider_only=True),
    )


@pytest.mark.parametrize("action", ALERT_ACTIONS)
def test_a_secret_scanning_alert_is_one_to_look_at_in_its_repository(action: str) -> None:
    payload = kit.secret_scanning_alert(7, "octo/app", 3, 5, action=action)
    decision = router.dispatch(_delivery("secret_scanning_alert", payload))
    assert decision == Decision(Outcome.QUEUED, alerts=(AlertCheck(7, "octo/app", 3, 5),))


@pytest.mark.parametrize("action", ["resolved", "assigned", "validated", "location_created"])
def test_other_secret_scanning_actions_are_ignored(action: str) -> None:
    payload = kit.secret_scanning_alert(7, "octo/app", 3, 5, action=action)
    assert router.dispatch(_delivery("secret_scanning_alert", payload)) == Decision(Outcome.IGNORED)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("alert.number", 0),
        ("alert.number", 2**31),
        ("alert.number", "3"),
        ("alert.number", None),
        ("repository.id", 0),
        ("repository.id", None),
        ("repository.full_name", "octo"),
        ("repository.full_name", "octo/.."),
        ("repository.full_name", "octo/app/x"),
        ("repository.full_name", None),
        ("repository.full_name", "o/" + "a" * 199),
    ],
)
def test_an_alert_without_a_usable_number_or_repository_is_a_bad_delivery(
    where: str, value: Any
) -> None:
    """The number must be one GitHub could have made; the name one that makes a path to ask
    GitHub at, nothing that climbs out of `/repos/{owner}/{repo}`. The refusal names the field
    (GitHub shows it in the delivery's log, where the App's owner looks)."""
    payload = kit.secret_scanning_alert(7, "octo/app", 3, 5)
    target, field = where.split(".")
    payload[target][field] = value
    with pytest.raises(BadDeliveryError, match=rf"^The payload's {where} is missing or not "):
        router.dispatch(_delivery("secret_scanning_alert", payload))


def test_a_repository_name_as_long_as_the_ledgers_column_is_read() -> None:
    """200 characters, the ledger's column: read (one more is refused, above)."""
    longest = "o/" + "a" * 198
    payload = kit.secret_scanning_alert(7, longest, 3, 5)
    decision = router.dispatch(_delivery("secret_scanning_alert", payload))
    assert decision.alerts == (AlertCheck(7, longest, 3, 5),)


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("workflow_run", {**kit.workflow_run_completed(7, "o/r", 1, 1, 5), "action": "requested"}),
        ("pull_request", {**kit.pull_request_closed(7, "o/r", 1, 5), "action": "opened"}),
        ("installation", {"action": "created"}),
        ("check_run", {"action": "completed"}),
        ("push", {}),
    ],
)
def test_other_events_and_actions_are_ignored(event: str, payload: dict[str, Any]) -> None:
    assert router.dispatch(_delivery(event, payload)) == Decision(Outcome.IGNORED)


def test_ping_pongs() -> None:
    assert router.dispatch(_delivery("ping", kit.ping())).outcome is Outcome.PONG


def test_a_routed_event_without_its_ids_is_a_bad_delivery() -> None:
    payload = kit.workflow_run_completed(7, "o/r", 1, 1, 5)
    del payload["workflow_run"]["run_attempt"]
    with pytest.raises(BadDeliveryError, match="run_attempt"):
        router.dispatch(_delivery("workflow_run", payload))
    payload["workflow_run"]["run_attempt"] = True  # not a number, however JSON spells it
    with pytest.raises(BadDeliveryError):
        router.dispatch(_delivery("workflow_run", payload))


def test_a_router_takes_one_route_per_event_and_action() -> None:
    mine = Router()

    @mine.register("push")
    def any_push(delivery: Delivery) -> Decision:
        return Decision(Outcome.PONG)

    assert mine.dispatch(_delivery("push", {"action": "whatever"})).outcome is Outcome.PONG
    with pytest.raises(ValueError, match="already"):
        mine.register("push")(any_push)
