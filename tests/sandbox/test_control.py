"""The stand-in's control API (`/_sandbox/`): what it refuses, and that a delivery it makes
is the one GitHub would make, byte for byte checkable with the App's secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import requests

from runkeys_sandbox.server.sandbox import Sandbox
from tests.github_data import webhook_schema


class Hook:
    """A webhook receiver that keeps what it was sent and answers 202."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args: Any) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def world() -> Iterator[tuple[Sandbox, Hook]]:
    hook = Hook()
    with Sandbox(webhook_url=hook.url) as sandbox:
        yield sandbox, hook
    hook.server.shutdown()


def _post(sandbox: Sandbox, path: str, body: Any = None) -> requests.Response:
    data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{sandbox.url}/_sandbox/{path}", data=data, timeout=10)


def test_a_completion_is_delivered_signed_in_githubs_shape(world: tuple[Sandbox, Hook]) -> None:
    sandbox, hook = world
    repo = sandbox.add_repository("octo/app")
    app = sandbox.add_app(webhook_secret="s3cret")
    sandbox.install(app, [repo])
    run = sandbox.add_workflow_run(repo, event="pull_request", pull_requests=[7])
    answer = _post(sandbox, f"runs/{run.id}/complete", {"conclusion": "cancelled"})
    assert answer.status_code == 200
    assert answer.json()["delivery"] == {
        "sent": True,
        "url": hook.url,
        "status": 202,
        "body": {"ok": True},
    }
    answer = _post(sandbox, "pulls/7/close", {})
    assert answer.status_code == 200, answer.text
    (first_headers, first), (second_headers, second) = hook.received
    for headers, body, event in (
        (first_headers, first, "workflow_run"),
        (second_headers, second, "pull_request"),
    ):
        expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert headers["x-hub-signature-256"] == f"sha256={expected}"
        assert headers["x-github-event"] == event
        assert headers["x-github-hook-installation-target-id"] == str(app.id)
    completed = json.loads(first)
    assert completed["workflow_run"]["conclusion"] == "cancelled"
    assert completed["installation"]["id"] == sandbox.world.installation_for(app, repo).id  # type: ignore[union-attr]
    assert list(webhook_schema("workflow-run-completed").iter_errors(completed)) == []
    closed = json.loads(second)
    assert (closed["action"], closed["number"]) == ("closed", 7)
    assert list(webhook_schema("pull-request-closed").iter_errors(closed)) == []


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("runs/123/complete", {}, 404, "no run 123"),
        ("runs/x/complete", {}, 404, "no run 'x'"),
        ("runs/{run}/complete", {"conclusion": "won"}, 400, "conclusion must be one of"),
        ("runs/{run}/complete", b"{not json", 400, "not JSON"),
        ("runs/{run}/complete", [1], 400, "not a JSON object"),
        ("pulls/7/close", {"merged": "yes"}, 400, "merged must be true or false"),
        ("pulls/7/close", {"repository": "no/such"}, 404, "no repository 'no/such'"),
        ("app-manifests", {"manifest": {"name": "x"}}, 400, "at least `url`"),
        ("runs", {}, 404, "control API has no POST"),
    ],
)
def test_the_control_api_refuses_what_it_cannot_do(
    world: tuple[Sandbox, Hook], path: str, body: Any, status: int, message: str
) -> None:
    sandbox, hook = world
    repo = sandbox.add_repository("octo/app")
    run = sandbox.add_workflow_run(repo)
    answer = _post(sandbox, path.format(run=run.id), body)
    assert answer.status_code == status
    assert message in answer.json()["message"]
    assert hook.received == []
    assert sandbox.requests[-1].path.startswith("/_sandbox/")  # recorded like the rest


def test_without_an_installation_nothing_is_sent(world: tuple[Sandbox, Hook]) -> None:
    sandbox, hook = world
    run = sandbox.add_workflow_run(sandbox.add_repository("octo/app"))
    answer = _post(sandbox, f"runs/{run.id}/complete")
    assert answer.json()["delivery"] == {
        "sent": False,
        "reason": "no App is installed on the repository",
    }
    assert hook.received == []
