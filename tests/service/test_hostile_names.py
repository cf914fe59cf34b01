"""A run of repository A names an environment that is a path, not a name (`..`): the service
refuses it at registration. Once, `..` made the worker send `DELETE /repos/{owner}/{repo}/`,
a request on the repository itself."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from handler.ledger.leases import get
from tests.service.conftest import GitHub
from tests.service.kit import assert_documented, body, js, stored

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


def test_a_name_with_a_slash_github_takes_is_registered(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    item = github.lease(environment="ci/pr-7")
    assert register(client, github, body(item)).status_code == 201
    secret = stored(app.extensions["runkeys"].ledger, item.id).secret
    assert secret is not None
    assert secret.environment == "ci/pr-7"
