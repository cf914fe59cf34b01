"""A run of repository A names an environment that is a path, not a name (`..`): the service
refuses it at registration, and a row that holds one anyway (written by an older version, or
by hand) makes the worker send nothing. Once, `..` made the worker send
`DELETE /repos/{owner}/{repo}/`, a request on the repository itself."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from handler.ledger.leases import get
from handler.worker import RevocationWorker
from runkeys.leases import LeaseState
from tests.service.attack_kit import run_worker
from tests.service.conftest import GitHub
from tests.service.kit import assert_documented, body, identity, js, put, stored

# name → how the 422's message goes on after the lease's id and key
HOSTILE = [
    ("..", "an environment name cannot be `.` or `..`"),
    (".", "an environment name cannot be `.` or `..`"),
    ("a/../b", "an environment name cannot be `.` or `..`"),
    ("../..", "an environment name cannot be `.` or `..`"),
    ("%2e%2e", "an environment name cannot contain a percent-escape"),
    ("..%2F", "an environment name cannot contain a percent-escape"),
    ("ci\nprod", "an environment name cannot contain the control or invisible character U+000A"),
    ("ci\u0085", "an environment name cannot contain the control or invisible character U+0085"),
    ("a//b", "an environment name cannot start or end with `/` or have `//`"),
    ("x" * 256, "an environment name may have at most 255 characters"),
]


def register(client: FlaskClient, github: GitHub, data: Any) -> Any:
    response = client.post("/v1/leases", json=data, headers=github.auth(github.claims()))
    assert_documented("POST", "/v1/leases", response.status_code, response.json)
    return response


@pytest.mark.parametrize(("environment", "problem"), HOSTILE)
def test_a_hostile_environment_is_refused_at_registration(
    client: FlaskClient, github: GitHub, app: Flask, environment: str, problem: str
) -> None:
    item = github.lease(environment=environment, environment_created=True)
    github.sandbox.clear_requests()
    response = register(client, github, body(item))
    assert response.status_code == 422
    assert js(response)["error"] == "invalid_lease"
    assert js(response)["message"].startswith(f"lease {item.id} (API_TOKEN): {problem}")
    with app.extensions["runkeys"].ledger.begin() as conn:
        assert get(conn, item.id) is None
    assert [r.method for r in github.sandbox.requests if r.method != "GET"] == []


@pytest.mark.parametrize("name", ["..", ".", "%2e%2e"])
def test_a_token_whose_repository_is_a_dot_segment_is_refused(
    client: FlaskClient, github: GitHub, name: str
) -> None:
    """Only the issuer signs such a token; were it to, the answer is still 401, never a 500
    nor a request on another path."""
    owner = github.repo.full_name.split("/")[0]
    github.sandbox.clear_requests()
    response = client.post(
        "/v1/leases",
        json=body(github.lease(repository=f"{owner}/{name}")),
        headers=github.auth(github.claims(), repository=f"{owner}/{name}"),
    )
    assert_documented("POST", "/v1/leases", response.status_code, response.json)
    assert response.status_code == 401
    assert "'repository'" in js(response)["message"]
    asked = [r.path for r in github.sandbox.requests if not r.path.startswith("/_services/")]
    assert asked == []  # only the issuer's keys were read


def test_a_name_with_a_slash_github_takes_is_registered(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    item = github.lease(environment="ci/pr-7")
    assert register(client, github, body(item)).status_code == 201
    secret = stored(app.extensions["runkeys"].ledger, item.id).secret
    assert secret is not None
    assert secret.environment == "ci/pr-7"


@pytest.mark.parametrize("environment", ["..", ".", "%2e%2e"])
def test_a_row_naming_a_dot_segment_makes_the_worker_send_nothing(
    github: GitHub, app: Flask, environment: str
) -> None:
    running = app.extensions["runkeys"]
    repo = github.repo
    item = github.lease(environment=environment, environment_created=True)
    put(running.ledger, identity(repo.full_name, repo.id), item)
    github.sandbox.clear_requests()
    run_worker(app, item.id)
    lease = stored(running.ledger, item.id)
    assert lease.state is LeaseState.FAILED  # at once: no retry can make the name safe
    assert lease.last_error is not None
    assert f"refusing to send environment {environment!r} to GitHub" in lease.last_error
    assert RevocationWorker(running).delete_environments() == 0
    assert [(r.method, r.path) for r in github.sandbox.requests] == []
