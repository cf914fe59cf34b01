"""What every `/v1` route checks before it runs, on both engines: a body within the API's own
limit (apart from the webhook's), a verified token, and the App installed on the token's
repository, the answer "not installed" remembered for a while per repository."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from handler.app import create_app
from runkeys.broker import new_key_pair
from runkeys.leases import LeaseState, Lifetime
from runkeys_sandbox.server import webhooks
from tests.service import kit
from tests.service.conftest import GitHub
from tests.service.kit import Clock, assert_documented, body, js, stored
from tests.services import unique

KIB = 1024
WEBHOOK_SECRET = "It's a Secret to Everybody"  # the session App's (tests/service/conftest.py)


def post(client: FlaskClient, path: str, data: Any, headers: dict[str, str]) -> TestResponse:
    response = client.post(path, json=data, headers=headers)
    assert_documented("POST", path, response.status_code, response.json)
    return response


def v1_routes(app: Flask) -> list[str]:
    return sorted(rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/v1/"))


def lookups(github: GitHub, repository: str) -> int:
    """How many times the service asked GitHub for the App's installation on `repository`."""
    owner, name = repository.split("/")
    path = f"/repos/{owner}/{name}/installation"
    return sum(
        1 for r in github.sandbox.requests if r.method == "GET" and r.path.lower() == path.lower()
    )


def some_body(github: GitHub, path: str, repository: str) -> dict[str, Any]:
    """A well-formed body for each /v1 route, for a lease of `repository`."""
    item = github.lease(repository=repository, lifetime=Lifetime.JOB)
    if path == "/v1/keys":
        return {
            "request_id": item.id,
            "keys": "TOKEN: {provider: random, ttl: 5m}\n",
            "destination": {"kind": "job"},
            "public_key": new_key_pair()[1],
        }
    if path == "/v1/keys/retire":
        return {"request_id": item.id, "scope": "all"}
    if path == "/v1/leases/retire":
        return {"leases": [{"id": item.id, "outcome": "revoked"}]}
    if path == "/v1/leases/check":
        return {"keys": [{"name": item.key_name, "fingerprint": item.fingerprint}]}
    return body(item)


# --- the installation, on every route -------------------------------------------------------


def test_every_v1_route_is_behind_the_blueprints_checks(app: Flask) -> None:
    routes = v1_routes(app)
    assert routes == [
        "/v1/keys",
        "/v1/keys/retire",
        "/v1/leases",
        "/v1/leases/check",
        "/v1/leases/retire",
    ]
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1/"):
            assert rule.endpoint.startswith("leases."), rule  # the blueprint whose checks run


def test_a_repository_without_the_app_is_refused_on_every_route(
    app: Flask, client: FlaskClient, github: GitHub
) -> None:
    stranger = github.sandbox.add_repository(f"{unique('stranger')}/repo")
    for path in v1_routes(app):
        claims = github.claims(repo=stranger)
        response = post(
            client, path, some_body(github, path, stranger.full_name), github.auth(claims)
        )
        assert (response.status_code, js(response)["error"]) == (403, "not_installed"), path
        assert stranger.full_name in js(response)["message"]


def test_a_post_step_report_after_the_app_was_removed_changes_nothing(
    app: Flask, client: FlaskClient, github: GitHub, environ: dict[str, str], clock: Clock
) -> None:
    claims = github.claims()
    item = github.lease(lifetime=Lifetime.JOB)
    assert post(client, "/v1/leases", body(item), github.auth(claims)).status_code == 201
    github.sandbox.uninstall(github.installation)
    replica = create_app(environ, clock=clock)  # another process: nothing cached
    try:
        report = {"leases": [{"id": item.id, "outcome": "revoked"}]}
        response = post(replica.test_client(), "/v1/leases/retire", report, github.auth(claims))
        assert (response.status_code, js(response)["error"]) == (403, "not_installed")
    finally:
        replica.extensions["runkeys"].close()
    assert stored(app.extensions["runkeys"].ledger, item.id).state is LeaseState.ACTIVE


def test_not_installed_is_remembered_per_repository_for_a_while(
    app: Flask, client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    stranger = github.sandbox.add_repository(f"{unique('stranger')}/repo")
    sibling = github.sandbox.add_repository(f"{stranger.owner}/sibling")

    def register(repo: Any) -> TestResponse:
        claims = github.claims(repo=repo)
        return post(
            client,
            "/v1/leases",
            some_body(github, "/v1/leases", repo.full_name),
            github.auth(claims),
        )

    for _ in range(5):
        assert register(stranger).status_code == 403
    assert lookups(github, stranger.full_name) == 1
    assert register(sibling).status_code == 403  # remembered per repository, not per owner
    assert lookups(github, sibling.full_name) == 1

    github.sandbox.install(github.app, [stranger])
    clock.advance(seconds=59)
    assert register(stranger).status_code == 403  # still taken at GitHub's earlier word
    assert lookups(github, stranger.full_name) == 1
    clock.advance(seconds=2)
    assert register(stranger).status_code == 201
    assert lookups(github, stranger.full_name) == 2
    assert register(stranger).status_code == 201  # found: kept for the process's life
    assert lookups(github, stranger.full_name) == 2


def test_a_failed_lookup_other_than_not_found_is_not_remembered(
    client: FlaskClient, github: GitHub
) -> None:
    github.sandbox.inject_fault(
        "GET",
        r"^/repos/[^/]+/[^/]+/installation$",
        status=403,
        times=1,
        body={  # not a rate limit: PyGithub does not retry it
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest/apps/apps"
            "#get-a-repository-installation-for-the-authenticated-app",
        },
    )
    claims = github.claims()
    response = post(client, "/v1/leases", body(github.lease()), github.auth(claims))
    assert (response.status_code, js(response)["error"]) == (503, "github_unavailable")
    response = post(client, "/v1/leases", body(github.lease()), github.auth(github.claims()))
    assert response.status_code == 201
    assert lookups(github, github.repo.full_name) == 2


def test_the_time_not_installed_is_remembered_is_a_setting(
    environ: dict[str, str], github: GitHub, clock: Clock
) -> None:
    made = create_app({**environ, "RUNKEYS_NOT_INSTALLED_TTL": "5s"}, clock=clock)
    client = made.test_client()
    stranger = github.sandbox.add_repository(f"{unique('stranger')}/repo")
    try:
        for _ in range(2):
            claims = github.claims(repo=stranger)
            data = some_body(github, "/v1/leases", stranger.full_name)
            assert post(client, "/v1/leases", data, github.auth(claims)).status_code == 403
            clock.advance(seconds=6)
    finally:
        made.extensions["runkeys"].close()
    assert lookups(github, stranger.full_name) == 2


# --- the body's size ------------------------------------------------------------------------


def padded(github: GitHub, path: str, size: int) -> dict[str, Any]:
    """A body of the route at about `size` bytes: a report's error, or a lease's params."""
    data = some_body(github, path, github.repo.full_name)
    if path == "/v1/leases/retire":
        data["leases"][0]["error"] = "e" * size
    elif path == "/v1/keys":
        data["keys"] += "# " + "p" * size + "\n"
    elif path in ("/v1/keys/retire", "/v1/leases/check"):
        data["padding"] = "p" * size  # an unknown field: refused, but only after the size
    else:
        data["leases"][0]["params"] = {"padding": "p" * size}
    return data


def test_a_v1_body_over_the_limit_is_refused_before_the_token_is_read(
    app: Flask, client: FlaskClient, github: GitHub
) -> None:
    for path in v1_routes(app):
        headers = github.auth(github.claims())
        for auth in ({}, headers):
            response = post(client, path, padded(github, path, 300 * KIB), auth)
            assert (response.status_code, js(response)["error"]) == (
                413,
                "request_entity_too_large",
            ), path
            assert "262144 bytes" in js(response)["message"]
        # The token was never verified, so never spent: it still works, once.
        response = post(client, path, some_body(github, path, github.repo.full_name), headers)
        assert (response.status_code, js(response).get("error")) in (
            (201, None),  # registered
            (200, None),  # a check, answered
            (404, "lease_not_found"),  # a report of a lease this run does not have
            (404, "broker_off"),  # keys, from a service without a policy
            (404, "request_not_found"),  # a retirement of a request this run did not make
        ), path


def test_a_chunked_v1_body_is_limited_as_it_is_read(client: FlaskClient, github: GitHub) -> None:
    data = webhooks.encode(padded(github, "/v1/leases", 300 * KIB))
    response = client.post(
        "/v1/leases",
        input_stream=io.BytesIO(data),
        headers={
            **github.auth(github.claims()),
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},  # as gunicorn says of chunked input
    )
    assert (response.status_code, js(response)["error"]) == (413, "request_entity_too_large")
    assert_documented("POST", "/v1/leases", 413, response.json)


def test_the_largest_registration_the_action_sends_is_within_the_limit(
    client: FlaskClient, github: GitHub
) -> None:
    leases = [github.lease(key_name=f"KEY_{i}") for i in range(100)]  # a spec's most keys
    response = post(client, "/v1/leases", body(*leases), github.auth(github.claims()))
    assert response.status_code == 201


def test_the_webhook_keeps_its_own_larger_limit(client: FlaskClient) -> None:
    payload = {**kit.ping(), "padding": "x" * (300 * KIB)}
    data = webhooks.encode(payload)
    headers = webhooks.delivery_headers(
        "ping", data, secret=WEBHOOK_SECRET, delivery_id=webhooks.new_delivery_id()
    )
    response = client.post("/webhook", data=data, headers=headers)
    assert (response.status_code, js(response)["outcome"]) == (200, "pong")


def test_the_api_limit_is_a_setting_apart_from_the_webhooks(
    environ: dict[str, str], github: GitHub, clock: Clock
) -> None:
    made = create_app(
        {**environ, "RUNKEYS_API_MAX_BYTES": "2048", "RUNKEYS_WEBHOOK_MAX_BYTES": "1024"},
        clock=clock,
    )
    client = made.test_client()
    try:
        response = post(client, "/v1/leases", padded(github, "/v1/leases", 3 * KIB), {})
        assert (response.status_code, js(response)["error"]) == (413, "request_entity_too_large")
        assert "2048 bytes" in js(response)["message"]
        response = post(client, "/v1/leases", body(github.lease()), github.auth(github.claims()))
        assert response.status_code == 201  # ≈0.6 KiB: within 2 KiB, over the webhook's 1 KiB
    finally:
        made.extensions["runkeys"].close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_not(
    environ: dict[str, str], github: GitHub, clock: Clock, chunked: bool
) -> None:
    made = create_app({**environ, "RUNKEYS_API_MAX_BYTES": "2048"}, clock=clock)
    client = made.test_client()

    def send(size: int) -> TestResponse:
        data = json.dumps(body(github.lease())).encode()
        data += b" " * (size - len(data))  # JSON may end in whitespace
        assert len(data) == size
        headers = {**github.auth(github.claims()), "Content-Type": "application/json"}
        if not chunked:
            return client.post("/v1/leases", data=data, headers=headers)
        return client.post(
            "/v1/leases",
            input_stream=io.BytesIO(data),
            headers={**headers, "Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )

    try:
        assert send(2048).status_code == 201
        response = send(2049)
        assert (response.status_code, js(response)["error"]) == (413, "request_entity_too_large")
    finally:
        made.extensions["runkeys"].close()


# --- what the retire route does with a report's error ----------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        "a" * (250 * KIB),
        "a://" + "u" * (250 * KIB),
        "postgresql://ci:" + "p" * (250 * KIB),
    ],
    ids=["one letter", "scheme, no userinfo end", "userinfo, no at sign"],
)
def test_a_hostile_error_in_a_report_is_cut_before_it_is_scrubbed(
    app: Flask, client: FlaskClient, github: GitHub, error: str
) -> None:
    claims = github.claims()
    item = github.lease(lifetime=Lifetime.JOB)
    post(client, "/v1/leases", body(item), github.auth(claims))
    report = {"leases": [{"id": item.id, "outcome": "failed", "error": error}]}
    response = post(client, "/v1/leases/retire", report, github.auth(claims))
    assert response.status_code == 200
    last_error = stored(app.extensions["runkeys"].ledger, item.id).last_error or ""
    assert 0 < len(last_error) <= 300
    assert "pppp" not in last_error
