"""Secret scanning alerts in the stand-in as GitHub serves them: PyGithub reads one with its
`secret`, GitHub's checks on an update, the permission each call needs, and the control API
that raises an alert and delivers `secret_scanning_alert` in the shape of GitHub's schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from runkeys_sandbox.server import payloads
from tests.github_data import webhook_schema
from tests.sandbox.conftest import Receiver, Seeded

ALERTS = "/repos/octo/app/secret-scanning/alerts"
READ = {"secret_scanning_alerts": "read", "metadata": "read"}
WRITE = {"secret_scanning_alerts": "write", "metadata": "read"}
VALUE = "rk_" + "a1B2c3D4" * 5


@pytest.fixture
def alerting(seeded: Seeded) -> Seeded:
    seeded.sb.update_installation(seeded.installation, permissions=WRITE)
    return seeded


def test_pygithub_reads_an_alert_with_its_secret(alerting: Seeded) -> None:
    raised = alerting.sb.raise_secret_alert(alerting.repo, VALUE)
    assert alerting.sb.raise_secret_alert(alerting.repo, VALUE) is raised  # one per secret
    repo = alerting.github().get_repo("octo/app")
    alert = repo.get_secret_scanning_alert(raised.number)
    assert (alert.number, alert.state, alert.secret) == (1, "open", VALUE)
    assert alert.html_url == f"{alerting.sb.url}/octo/app/security/secret-scanning/1"
    hidden = repo.get_secret_scanning_alert(1, hide_secret=True)
    assert hidden.raw_data.get("secret") is None
    assert [a.number for a in repo.get_secret_scanning_alerts()] == [1]
    assert list(repo.get_secret_scanning_alerts(state="resolved")) == []


def _patch(seeded: Seeded, number: Any, body: Any, token: str | None = None) -> Any:
    return seeded.api("PATCH", f"{ALERTS}/{number}", token or seeded.token(), json=body)


def test_resolving_needs_a_resolution_and_reopening_takes_none(alerting: Seeded) -> None:
    alert = alerting.sb.raise_secret_alert(alerting.repo, VALUE)
    assert _patch(alerting, 1, {"state": "resolved"}).status_code == 422
    assert _patch(alerting, 1, {"state": "resolved", "resolution": "revokeD"}).status_code == 422
    assert _patch(alerting, 1, {}).status_code == 422
    done = _patch(
        alerting,
        1,
        {"state": "resolved", "resolution": "revoked", "resolution_comment": "retired"},
    )
    assert done.status_code == 200
    assert (done.json()["state"], done.json()["resolution"]) == ("resolved", "revoked")
    assert done.json()["resolved_by"]["login"] == f"{alerting.app.slug}[bot]"
    assert (alert.state, alert.resolution_comment) == ("resolved", "retired")
    again = _patch(alerting, 1, {"state": "resolved", "resolution": "revoked"})
    assert again.status_code == 400  # the resolution was not changed
    assert _patch(alerting, 1, {"state": "open", "resolution": "revoked"}).status_code == 422
    reopened = _patch(alerting, 1, {"state": "open"})
    assert reopened.status_code == 200
    assert (alert.state, alert.resolution, alert.resolved_by) == ("open", None, None)


@pytest.mark.parametrize("number", ["0", "2", "-1", "1.0", "x", "99999999999999999999"])
def test_an_alert_that_is_not_there_is_404(alerting: Seeded, number: str) -> None:
    alerting.sb.raise_secret_alert(alerting.repo, VALUE)
    assert alerting.api("GET", f"{ALERTS}/{number}", alerting.token()).status_code == 404
    body = {"state": "resolved", "resolution": "revoked"}
    assert _patch(alerting, number, body).status_code == 404


def test_reading_needs_read_and_resolving_needs_write(seeded: Seeded) -> None:
    seeded.sb.raise_secret_alert(seeded.repo, VALUE)
    body = {"state": "resolved", "resolution": "revoked"}
    seeded.sb.update_installation(seeded.installation, permissions={"metadata": "read"})
    refused = seeded.api("GET", f"{ALERTS}/1", seeded.token())
    assert refused.status_code == 403
    assert refused.headers["X-Accepted-GitHub-Permissions"] == "secret_scanning_alerts=read"
    seeded.sb.update_installation(seeded.installation, permissions=READ)
    token = seeded.token()
    assert seeded.api("GET", f"{ALERTS}/1", token).json()["secret"] == VALUE
    assert _patch(seeded, 1, body, token).status_code == 403
    seeded.sb.update_installation(seeded.installation, permissions=WRITE)
    assert _patch(seeded, 1, body).status_code == 200


def test_the_control_api_raises_an_alert_and_delivers_it_without_the_value(
    alerting: Seeded, receiver: Receiver
) -> None:
    alerting.sb.webhook_url = receiver.url
    try:
        answer = requests.post(
            f"{alerting.sb.url}/_sandbox{ALERTS}",
            json={"secret": VALUE, "publicly_leaked": True},
            timeout=10,
        )
    finally:
        alerting.sb.webhook_url = None
    assert answer.status_code == 201
    assert VALUE not in answer.text
    assert answer.json()["number"] == 1
    assert answer.json()["delivery"]["status"] == 202
    ((headers, body),) = receiver.received
    assert headers["X-Github-Event"] == "secret_scanning_alert"
    assert VALUE.encode() not in body
    payload = json.loads(body)
    assert payload["action"] == "publicly_leaked"
    assert payload["installation"]["id"] == alerting.installation.id
    assert payload["repository"]["id"] == alerting.repo.id
    webhook_schema("secret-scanning-alert-publicly-leaked").validate(payload)


@pytest.mark.parametrize("action", ["created", "publicly_leaked", "reopened"])
def test_built_deliveries_match_githubs_schemas(alerting: Seeded, action: str) -> None:
    alert = alerting.sb.raise_secret_alert(alerting.repo, VALUE)
    payload = payloads.secret_scanning_alert(
        alerting.sb, alerting.repo, alert, alerting.installation, action=action
    )
    webhook_schema(f"secret-scanning-alert-{action.replace('_', '-')}").validate(payload)
    assert "secret" not in payload["alert"]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (f"/_sandbox{ALERTS}", {}, 400),
        (f"/_sandbox{ALERTS}", {"secret": ""}, 400),
        (f"/_sandbox{ALERTS}", {"secret": VALUE, "publicly_leaked": "yes"}, 400),
        ("/_sandbox/repos/octo/nowhere/secret-scanning/alerts", {"secret": VALUE}, 404),
    ],
)
def test_the_control_api_refuses_what_it_cannot_raise(
    alerting: Seeded, path: str, body: dict[str, Any], status: int
) -> None:
    answer = requests.post(f"{alerting.sb.url}{path}", json=body, timeout=10)
    assert answer.status_code == status
    assert alerting.repo.secret_alerts == {}
