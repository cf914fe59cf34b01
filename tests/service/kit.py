"""What the service's tests share: a movable clock, lease bodies, webhook payloads built from
GitHub's own examples (and checked against the official schemas), and small real HTTP servers."""

from __future__ import annotations

import functools
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from werkzeug.wrappers import Request, Response

from handler.ledger import Ledger
from handler.ledger.leases import get, register
from handler.ledger.records import LeaseRecord
from runkeys.cli import main
from runkeys.connections import Connection, target_of
from runkeys.labels import label
from runkeys.leases import LeaseRequest, Lifetime, SecretTarget, fingerprint
from runkeys.oidc import RunIdentity
from tests.github_data import webhook_example

AUDIENCE = "https://runkeys.example/service"


class Clock:
    """The service's clock for tests: real time until moved, then moved only by the test."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


# --- leases ---------------------------------------------------------------------------------


def lease(
    *,
    repository: str = "octo/app",
    key_name: str = "API_TOKEN",
    lifetime: Lifetime = Lifetime.RUN,
    ttl: timedelta = timedelta(hours=1),
    provider: str = "random",
    reference: str | None = None,
    connection: str | None = None,
    connection_url: str | None = None,
    params: dict[str, Any] | None = None,
    environment: str | None = None,
    environment_created: bool = False,
    secret: bool = True,
    now: datetime | None = None,
    lease_id: str | None = None,
) -> LeaseRequest:
    """A lease as the action would register it. `connection_url`: the URL of `connection`
    the key was minted through, whose target the lease records (none: a lease as an older
    action registered it, which the service refuses and the worker revokes unchecked)."""
    issued = now or datetime.now(UTC)
    target = None
    if connection is not None and connection_url is not None:
        target = target_of(Connection(connection, connection_url)).fingerprint()
    value = secrets.token_urlsafe(32)
    lease_id = lease_id or uuid.uuid4().hex
    return LeaseRequest(
        id=lease_id,
        key_name=key_name,
        provider=provider,
        # what the random provider mints for this lease: `random:<label>`
        reference=reference or f"random:{label(lease_id, key_name)}",
        fingerprint=fingerprint(value),
        lifetime=lifetime,
        issued_at=issued,
        expires_at=issued + ttl,
        connection=connection,
        connection_target=target,
        secret=SecretTarget(repository, key_name, environment) if secret else None,
        environment_created=environment_created,
        params=params or {},
    )


def body(*leases: LeaseRequest) -> dict[str, Any]:
    return {"leases": msgspec.to_builtins(leases)}


# --- webhook payloads -----------------------------------------------------------------------


def _installation(installation_id: int, account_id: int, login: str) -> dict[str, Any]:
    data: dict[str, Any] = webhook_example("installation/deleted.payload.json")["installation"]
    data.update(id=installation_id, app_slug="runkeys", created_at="2026-01-01T00:00:00Z")
    data.update(updated_at="2026-01-01T00:00:00Z")
    data["account"].update(id=account_id, login=login)
    return data


def _repository(target: dict[str, Any], repo_id: int, full_name: str) -> None:
    owner, name = full_name.split("/")
    target.update(id=repo_id, name=name, full_name=full_name)
    target["owner"]["login"] = owner


def workflow_run_completed(
    repo_id: int, full_name: str, run_id: int, attempt: int, installation_id: int | None
) -> dict[str, Any]:
    data = webhook_example("workflow_run/completed.payload.json")
    _repository(data["repository"], repo_id, full_name)
    data["workflow_run"].update(id=run_id, run_attempt=attempt, status="completed")
    if installation_id is not None:
        data["installation"] = {
            "id": installation_id,
            "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ==",
        }
    return data


def pull_request_closed(
    repo_id: int,
    full_name: str,
    number: int,
    installation_id: int | None,
    *,
    closed_at: datetime | None = None,
) -> dict[str, Any]:
    """GitHub's example, for this pull request, closed at `closed_at` (default: now, in whole
    seconds as GitHub writes it)."""
    data = webhook_example("pull_request/closed.payload.json")
    _repository(data["repository"], repo_id, full_name)
    data["number"] = number
    data["pull_request"]["number"] = number
    closed = (closed_at or datetime.now(UTC)).replace(microsecond=0)
    data["pull_request"]["closed_at"] = closed.isoformat().replace("+00:00", "Z")
    if installation_id is not None:
        data["installation"] = {
            "id": installation_id,
            "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ==",
        }
    return data


def installation_deleted(
    installation_id: int, account_id: int, login: str, repositories: Iterable[tuple[int, str]]
) -> dict[str, Any]:
    data = webhook_example("installation/deleted.payload.json")
    data["installation"] = _installation(installation_id, account_id, login)
    template = data["repositories"][0]
    data["repositories"] = [
        {**template, "id": rid, "full_name": name, "name": name.split("/")[1]}
        for rid, name in repositories
    ]
    return data


def installation_repositories_removed(
    installation_id: int, account_id: int, login: str, repositories: Iterable[tuple[int, str]]
) -> dict[str, Any]:
    data = webhook_example("installation_repositories/removed.payload.json")
    data["installation"] = _installation(installation_id, account_id, login)
    template = data["repositories_removed"][0]
    data["repositories_removed"] = [
        {**template, "id": rid, "full_name": name, "name": name.split("/")[1]}
        for rid, name in repositories
    ]
    return data


NODE_ID = "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="


def secret_scanning_alert(
    repo_id: int, full_name: str, number: int, installation_id: int, *, action: str = "created"
) -> dict[str, Any]:
    """`secret_scanning_alert` as GitHub delivers it: the alert without its value (GitHub
    publishes no example; the repository is the one of its `workflow_run` example)."""
    data = webhook_example("workflow_run/completed.payload.json")
    _repository(data["repository"], repo_id, full_name)
    html = f"https://github.com/{full_name}/security/secret-scanning/{number}"
    api = f"https://api.github.com/repos/{full_name}/secret-scanning/alerts/{number}"
    alert = {
        "number": number,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "url": api,
        "html_url": html,
        "locations_url": f"{api}/locations",
        "resolution": None,
        "resolved_at": None,
        "resolved_by": None,
        "resolution_comment": None,
        "secret_type": "runkeys_token",
        "secret_type_display_name": "runkeys token",
        "validity": "unknown",
        "publicly_leaked": action == "publicly_leaked",
        "multi_repo": False,
    }
    return {
        "action": action,
        "alert": alert,
        "repository": data["repository"],
        "sender": data["sender"],
        "installation": {"id": installation_id, "node_id": NODE_ID},
    }


def ping() -> dict[str, Any]:
    return webhook_example("ping/with-app_id.payload.json")


# --- small real HTTP servers ----------------------------------------------------------------


@dataclass
class TokenIssuer:
    """An in-house token service as the `http` provider drives it: `POST /tokens` mints,
    `DELETE /tokens/<id>` revokes (404 once gone). Counts every call and every revocation that
    actually ended a live token, so a test can tell "revoked once" from "asked twice"."""

    revoke_delay: float = 0.0
    fail_with: int | None = None  # answer every revoke with this status (the issuer is failing)
    live: set[str] = field(default_factory=set)
    revoke_calls: dict[str, int] = field(default_factory=dict)
    revoked: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Called at the next revoke, once: what a test has happen while a worker is mid-claim.
    on_revoke: Callable[[], None] | None = None

    def mint(self, count: int = 1) -> list[str]:
        with self.lock:
            ids = [uuid.uuid4().hex for _ in range(count)]
            self.live.update(ids)
            return ids

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        parts = request.path.strip("/").split("/")
        if request.method == "DELETE" and len(parts) == 2 and parts[0] == "tokens":
            response = self._revoke(parts[1])
        else:
            response = Response("not here", status=404)
        return response(environ, start_response)

    def _revoke(self, token_id: str) -> Response:
        if self.fail_with is not None:
            return Response(f"failing; caller said {token_id}", status=self.fail_with)
        with self.lock:
            hook, self.on_revoke = self.on_revoke, None
        if hook is not None:
            hook()
        with self.lock:
            self.revoke_calls[token_id] = self.revoke_calls.get(token_id, 0) + 1
            was_live = token_id in self.live
            self.live.discard(token_id)
            if was_live:
                self.revoked[token_id] = self.revoked.get(token_id, 0) + 1
        if self.revoke_delay:
            threading.Event().wait(self.revoke_delay)
        return Response(status=204 if was_live else 404)


@dataclass
class HeldIssuer(TokenIssuer):
    """Answers the first `answered` revocations, then holds each until `released`: a kill
    then lands while a worker is mid-revocation, whatever the scheduler does. A held one goes
    through once released, as a revocation whose caller died before the answer."""

    answered: int = 10
    released: threading.Event = field(default_factory=threading.Event)
    calls: int = 0

    def _revoke(self, token_id: str) -> Response:
        with self.lock:
            self.calls += 1
            held = self.calls > self.answered
        if held:
            self.released.wait(60)
        return super()._revoke(token_id)


HTTP_PARAMS = {
    "auth": "bearer",
    "mint": {"path": "/tokens", "body": {"name": "{label}"}},
    "response": {"value": "token", "reference": "id"},
    "revoke": {"path": "/tokens/{reference}"},
    "retries": 0,
    "timeout": 5,
}


# --- the API's description --------------------------------------------------------------------

API_SPEC = Path(__file__).resolve().parents[2] / "docs" / "service-api.openapi.yaml"


@functools.cache
def api_spec() -> dict[str, Any]:
    import yaml

    loaded: dict[str, Any] = yaml.safe_load(API_SPEC.read_text())
    return loaded


def assert_documented(method: str, path: str, status: int, data: Any) -> None:
    """`data` is what docs/service-api.openapi.yaml says `method path` answers with `status`."""
    from openapi_schema_validator import OAS31Validator

    spec = api_spec()
    responses = spec["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} {status} is not documented"
    response = responses[str(status)]
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"]["application/json"]["schema"]
    OAS31Validator({**schema, "components": spec["components"]}).validate(data)


# --- leases straight into the ledger --------------------------------------------------------


def identity(
    repository: str = "octo/app",
    repository_id: int = 1296269,
    run_id: int = 30433642,
    run_attempt: int = 1,
    *,
    owner_id: int = 583231,
    ref: str = "refs/heads/main",
    environment: str | None = None,
) -> RunIdentity:
    return RunIdentity(
        repository=repository,
        repository_id=repository_id,
        owner=repository.split("/", maxsplit=1)[0],
        owner_id=owner_id,
        run_id=run_id,
        run_attempt=run_attempt,
        ref=ref,
        sha="e" * 40,
        event_name="pull_request" if ref.startswith("refs/pull/") else "push",
        environment=environment,
        subject=f"repo:{repository}:ref:{ref}",
        jti=uuid.uuid4().hex,
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )


def put(
    ledger: Ledger,
    who: RunIdentity,
    *leases: LeaseRequest,
    installation_id: int | None = 5,
    now: datetime | None = None,
) -> list[str]:
    """Register `leases` for `who` as the API would, minus HTTP."""
    with ledger.begin() as conn:
        register(
            conn, who, list(leases), installation_id=installation_id, now=now or datetime.now(UTC)
        )
    return [item.id for item in leases]


def stored(ledger: Ledger, lease_id: str) -> LeaseRecord:
    with ledger.begin() as conn:
        found = get(conn, lease_id)
    assert found is not None, f"no lease {lease_id}"
    return found


def js(response: Any) -> Any:
    """A test response's JSON body, typed loosely (tests index into it)."""
    data: Any = response.get_json()
    return data


def states(ledger: Ledger, ids: Iterable[str]) -> dict[str, str]:
    with ledger.begin() as conn:
        return {i: found.state.value for i in ids if (found := get(conn, i)) is not None}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`runkeys ARGV` in this process, as an operator runs it: exit code, stdout, stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
