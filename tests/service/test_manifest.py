"""`app-manifest.json` asks for exactly what the service needs: with its permissions the whole
life of a lease works against the sandbox (which refuses what GitHub would refuse), and without
any one of them something breaks."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from flask import Flask

from handler.app import create_app
from handler.ledger.queue import LeasesById, queue
from handler.service import Service
from handler.sweeper import Sweeper
from handler.worker import RevocationWorker
from runkeys.errors import GitHubError
from runkeys.github.runlogs import RunLogs
from runkeys.github.secrets import SecretStore
from runkeys.github.session import GitHubConfig, GitHubSession
from runkeys.leases import fingerprint
from runkeys.providers.random_value import make_token
from runkeys_sandbox.server import payloads, webhooks
from runkeys_sandbox.server.sandbox import Sandbox
from runkeys_sandbox.server.state import App, Repository, SecretScanningAlert
from tests.service.conftest import make_environ
from tests.service.kit import AUDIENCE, Clock, body, js, lease, stored
from tests.services import unique

MANIFEST = json.loads((Path(__file__).resolve().parents[2] / "app-manifest.json").read_text())
PERMISSIONS = MANIFEST["default_permissions"]
# An App receives an event only with the permission it needs (each event's "Availability" in
# https://docs.github.com/webhooks/webhook-events-and-payloads).
EVENT_NEEDS = {
    "workflow_run": ("actions", "read"),
    "pull_request": ("pull_requests", "read"),
    "secret_scanning_alert": ("secret_scanning_alerts", "read"),
}


def test_the_manifest_asks_for_exactly_these_permissions_and_events() -> None:
    assert PERMISSIONS == {
        "secrets": "write",  # delete the secrets runkeys wrote
        "environments": "write",  # environment secrets live under both permissions
        "administration": "write",  # delete the environments runkeys created
        # workflow_run events; a run's status for the sweeper; its logs, read and deleted
        "actions": "write",
        "pull_requests": "read",  # pull_request events
        # secret_scanning_alert events; read an alert's value, resolve it once retired
        "secret_scanning_alerts": "write",
        "metadata": "read",  # every App has it
    }
    assert sorted(MANIFEST["default_events"]) == [
        "pull_request",
        "secret_scanning_alert",
        "workflow_run",
    ]
    for event in MANIFEST["default_events"]:
        permission, access = EVENT_NEEDS[event]
        assert PERMISSIONS[permission] in (access, "write")
    assert MANIFEST["hook_attributes"]["url"].endswith("/webhook")
    assert MANIFEST["public"] is False


def _life_of_a_lease(
    sandbox: Sandbox, app: App, permissions: dict[str, str], tmp_path: Path
) -> dict[str, bool]:
    """Register two leases whose secrets sit in an environment runkeys created and retire them
    with the worker one after the other (the first's secret is deleted on its own, as the other
    still uses the environment; then the environment goes whole), and let the sweeper reconcile
    a completed run. Which steps worked."""
    repo = sandbox.add_repository(f"{unique('perm').replace('_', '-')}/app")
    sandbox.install(app, [repo], permissions=permissions)
    full = sandbox.add_token(
        [repo], {"secrets": "write", "environments": "write", "administration": "write"}
    )
    store = SecretStore(GitHubSession(GitHubConfig(sandbox.url, token=full)), repo.full_name)
    store.create_environment("ci-run-1")
    item = lease(repository=repo.full_name, environment="ci-run-1", environment_created=True)
    assert item.secret is not None
    store.put(item.secret, "value")
    keeper = lease(
        repository=repo.full_name,
        key_name="KEEPER",
        environment="ci-run-1",
        environment_created=True,
    )
    assert keeper.secret is not None
    store.put(keeper.secret, "value")
    url = f"sqlite:///{tmp_path / unique('ledger')}.sqlite3"
    clock = Clock()
    flask_app = create_app(make_environ(sandbox, app, url), clock=clock)
    service: Service = flask_app.extensions["runkeys"]
    run = sandbox.add_workflow_run(repo, status="completed", conclusion="success")
    claims = sandbox.run_claims(repo, run.id)
    token = sandbox.oidc_token(claims, AUDIENCE)
    other = lease(repository=repo.full_name, key_name="OTHER", secret=False)
    value = make_token(secrets.token_hex(16))
    leaked = msgspec.structs.replace(
        lease(repository=repo.full_name, key_name="LEAKED", secret=False),
        fingerprint=fingerprint(value),
    )
    response = flask_app.test_client().post(
        "/v1/leases",
        json=body(item, keeper, other, leaked),
        headers={"Authorization": f"Bearer {token}"},
    )
    worked = {"register": response.status_code == 201}
    assert worked["register"], js(response)
    with service.ledger.begin() as conn:
        queue(conn, LeasesById((item.id,)), actor="t", reason="t", now=clock())
    RevocationWorker(service).drain()
    worked["delete secret"] = stored(service.ledger, item.id).state.value == "revoked"
    with service.ledger.begin() as conn:
        queue(conn, LeasesById((keeper.id,)), actor="t", reason="t", now=clock())
    RevocationWorker(service).drain()
    worked["delete environment"] = "ci-run-1" not in sandbox.environment_names(repo)
    alert = sandbox.raise_secret_alert(repo, value)
    delivered = deliver(flask_app, sandbox, app, repo, alert)
    assert delivered == 200
    RevocationWorker(service).drain()
    worked["retire leaked"] = stored(service.ledger, leaked.id).state.value == "revoked"
    worked["resolve alert"] = alert.resolution == "revoked"
    clock.advance(minutes=2)
    report = Sweeper(service).sweep()
    worked["read run"] = report.errors == [] and report.reconciled == 1
    sandbox.set_run_logs(repo, run.id, {"ci": [("Test", "ok")]})
    logs = RunLogs(service.github, repo.full_name)
    calls: dict[str, Callable[[], bool]] = {
        "read logs": lambda: logs.archive_url(run.id, 1) is not None,
        "delete logs": lambda: logs.delete(run.id),
    }
    for step, call in calls.items():
        try:
            worked[step] = call()
        except GitHubError:
            worked[step] = False
    service.close()
    return worked


def deliver(
    flask_app: Flask, sandbox: Sandbox, app: App, repo: Repository, alert: SecretScanningAlert
) -> int:
    """The signed `secret_scanning_alert` delivery the stand-in builds, to the service."""
    installation = sandbox.world.installation_for(app, repo)
    assert installation is not None
    data = webhooks.encode(payloads.secret_scanning_alert(sandbox, repo, alert, installation))
    headers = webhooks.delivery_headers(
        "secret_scanning_alert",
        data,
        secret=app.webhook_secret,
        delivery_id=webhooks.new_delivery_id(),
    )
    return flask_app.test_client().post("/webhook", data=data, headers=headers).status_code


STEPS = ["register", "delete secret", "delete environment", "retire leaked", "resolve alert"]


def test_the_manifest_permissions_are_enough(sandbox: tuple[Sandbox, App], tmp_path: Path) -> None:
    worked = _life_of_a_lease(*sandbox, dict(PERMISSIONS), tmp_path)
    assert worked == dict.fromkeys([*STEPS, "read run", "read logs", "delete logs"], True)


def test_reading_alerts_is_not_enough_to_resolve_them(
    sandbox: tuple[Sandbox, App], tmp_path: Path
) -> None:
    """With Secret scanning alerts: read, the leaked key is retired all the same; only
    resolving the alert needs write."""
    permissions = {**PERMISSIONS, "secret_scanning_alerts": "read"}
    worked = _life_of_a_lease(*sandbox, permissions, tmp_path)
    assert worked["retire leaked"] is True
    assert worked["resolve alert"] is False


@pytest.mark.parametrize(
    ("dropped", "breaks"),
    [
        ("secrets", "delete secret"),
        ("environments", "delete secret"),
        ("administration", "delete environment"),
        ("actions", "read run"),
        ("secret_scanning_alerts", "retire leaked"),
        ("actions", "read logs"),
    ],
)
def test_each_permission_is_needed(
    sandbox: tuple[Sandbox, App], tmp_path: Path, dropped: str, breaks: str
) -> None:
    permissions = {k: v for k, v in PERMISSIONS.items() if k != dropped}
    worked = _life_of_a_lease(*sandbox, permissions, tmp_path)
    assert worked[breaks] is False


def test_deleting_a_runs_logs_needs_actions_write(
    sandbox: tuple[Sandbox, App], tmp_path: Path
) -> None:
    """RUNKEYS_DELETE_LEAKED_LOGS: GitHub refuses the DELETE with Actions: read alone."""
    worked = _life_of_a_lease(*sandbox, {**PERMISSIONS, "actions": "read"}, tmp_path)
    assert worked["read logs"] is True
    assert worked["delete logs"] is False
