"""Webhook signing against GitHub's published vector and real signed deliveries, and deliveries
posted over HTTP with the headers a GitHub App's deliveries carry."""

from __future__ import annotations

import json
import re

import pytest

from runkeys_sandbox.server.sandbox import Sandbox
from runkeys_sandbox.server.webhooks import deliver, sign, sign_sha1
from tests.github_data import DELIVERIES_SECRET, recorded_delivery
from tests.sandbox.conftest import Receiver


def test_official_vector() -> None:
    # https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries
    assert sign(b"Hello, World!", "It's a Secret to Everybody") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


@pytest.mark.parametrize("name", ["workflow_run.in_progress", "pull_request.closed"])
def test_real_deliveries(name: str) -> None:
    headers, body = recorded_delivery(name)
    assert sign(body, DELIVERIES_SECRET) == headers["x-hub-signature-256"]
    assert sign_sha1(body, DELIVERIES_SECRET) == headers["x-hub-signature"]
    assert sign(body, DELIVERIES_SECRET + "x") != headers["x-hub-signature-256"]


def test_deliver_posts_signed_bytes_with_githubs_headers(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    app = sandbox.add_app(webhook_secret="s3cret")
    payload = {
        "action": "completed",
        "workflow_run": {"id": 1, "run_attempt": 1},
        "installation": {"id": 9},
    }
    answer = sandbox.deliver(receiver.url, "workflow_run", payload)
    assert answer.status_code == 202
    ((headers, body),) = receiver.received
    assert json.loads(body) == payload
    assert body == json.dumps(payload, separators=(",", ":")).encode()  # compact, as GitHub sends
    assert headers["X-Hub-Signature-256"] == sign(body, "s3cret")
    assert headers["X-Hub-Signature"] == sign_sha1(body, "s3cret")
    assert headers["X-Github-Event"] == "workflow_run"
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}",
        headers["X-Github-Delivery"],
    )
    assert headers["X-Github-Hook-Installation-Target-Type"] == "integration"
    assert headers["X-Github-Hook-Installation-Target-Id"] == str(app.id)
    assert headers["X-Github-Hook-Id"].isdigit()
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert headers["Content-Type"] == "application/json"


def test_redelivery_keeps_the_guid_and_exact_bytes_are_sent(receiver: Receiver) -> None:
    recorded, body = recorded_delivery("pull_request.closed")
    for _ in range(2):
        deliver(
            receiver.url,
            "pull_request",
            body,
            secret=DELIVERIES_SECRET,
            delivery_id="abc-123",
            app_id=2010729,
        )
    (first_headers, first_body), (second_headers, _) = receiver.received
    assert first_body == body
    assert first_headers["X-Github-Delivery"] == second_headers["X-Github-Delivery"] == "abc-123"
    assert first_headers["X-Hub-Signature-256"] == recorded["x-hub-signature-256"]


def test_without_a_secret_nothing_is_signed(receiver: Receiver) -> None:
    deliver(receiver.url, "ping", {"zen": "Keep it logically awesome."}, secret=None)
    ((headers, _),) = receiver.received
    assert "X-Hub-Signature-256" not in headers
    assert "X-Github-Hook-Installation-Target-Type" not in headers


def test_deliver_needs_to_know_the_app(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.add_app()
    second = sandbox.add_app(webhook_secret="second")
    with pytest.raises(ValueError, match="name the App"):
        sandbox.deliver(receiver.url, "ping", {})
    sandbox.deliver(receiver.url, "ping", {}, app=second)
    assert receiver.received[0][0]["X-Hub-Signature-256"] == sign(b"{}", "second")
