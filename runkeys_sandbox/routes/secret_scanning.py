"""Secret scanning alerts of a repository
(https://docs.github.com/rest/secret-scanning/secret-scanning): list, get (with the `secret`
unless `hide_secret=true`) and update. An update that resolves needs a resolution; one that
reopens takes none; a resolution set again unchanged is refused. Alerts are raised by tests
and the control API (`Sandbox.raise_secret_alert`), as GitHub's scanner raises them outside
the REST API."""

from __future__ import annotations

from typing import Any

from runkeys_sandbox.server import bodies
from runkeys_sandbox.server.errors import ApiError
from runkeys_sandbox.server.representations import secret_alert_json
from runkeys_sandbox.server.routing import REPO, Call, Reply, Route, paginate
from runkeys_sandbox.server.state import Account, SecretScanningAlert

_DOCS = "https://docs.github.com/rest/secret-scanning/secret-scanning"
STATES = ("open", "resolved")
# The description's words for its 400 and 422 answers (GitHub's own messages are not recorded).
NOT_CHANGED = "Bad request, resolution comment is invalid or the resolution was not changed."
MISMATCH = "State does not match the resolution or resolution comment"


def _hide_secret(call: Call) -> bool:
    return (call.arg("hide_secret") or "").lower() == "true"


def list_alerts(call: Call) -> Reply:
    repo = call.repository
    state = call.arg("state")
    if state is not None and state not in STATES:
        raise ApiError(422, f"Invalid state: {state}")  # not GitHub's recorded message
    alerts = sorted(repo.secret_alerts.values(), key=lambda a: a.number, reverse=True)
    shown = [
        secret_alert_json(repo, alert, call.base_url, secret=not _hide_secret(call))
        for alert in alerts
        if state is None or alert.state == state
    ]
    return paginate(call, shown)


def _alert(call: Call) -> SecretScanningAlert:
    return call.numbered(call.repository.secret_alerts, "alert_number")


def get_alert(call: Call) -> Reply:
    alert = _alert(call)
    body = secret_alert_json(call.repository, alert, call.base_url, secret=not _hide_secret(call))
    return Reply(200, body)


def update_alert(call: Call) -> Reply:
    alert = _alert(call)
    body: dict[str, Any] = call.body(bodies.SECRET_SCANNING_ALERT_UPDATE)
    if not {"state", "assignee", "validity"} & body.keys():
        raise ApiError(422, 'Invalid request.\n\nNo subschema in "anyOf" matched.')
    state = body.get("state", alert.state)
    resolution = body.get("resolution")
    if state == "resolved" and resolution is None:
        raise ApiError(422, MISMATCH)
    if state == "open" and resolution is not None:
        raise ApiError(422, MISMATCH)
    if state == "resolved" and alert.state == "resolved" and resolution == alert.resolution:
        raise ApiError(400, NOT_CHANGED)
    if "state" in body:
        alert.state = state
        alert.resolution = resolution
        alert.resolution_comment = body.get("resolution_comment")
        alert.resolved_at = call.now if state == "resolved" else None
        alert.resolved_by = _resolver(call) if state == "resolved" else None
    alert.updated_at = call.now
    return Reply(200, secret_alert_json(call.repository, alert, call.base_url))


def _resolver(call: Call) -> Account:
    """Who resolved it: an App's installation token acts as the App's bot."""
    token = call.caller.token
    if token is not None and token.installation is not None:
        app = token.installation.app
        return Account(f"{app.slug}[bot]", app.id, "Bot")
    return Account("octocat", 583231, "User")


_ALERTS = "/repos/{owner}/{repo}/secret-scanning/alerts"

ROUTES = (
    Route(
        "GET", _ALERTS, list_alerts, REPO, f"{_DOCS}#list-secret-scanning-alerts-for-a-repository"
    ),
    Route(
        "GET",
        f"{_ALERTS}/{{alert_number}}",
        get_alert,
        REPO,
        f"{_DOCS}#get-a-secret-scanning-alert",
    ),
    Route(
        "PATCH",
        f"{_ALERTS}/{{alert_number}}",
        update_alert,
        REPO,
        f"{_DOCS}#update-a-secret-scanning-alert",
    ),
)
