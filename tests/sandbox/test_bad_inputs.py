"""Bad inputs get GitHub's status codes and messages, never a 500 or a traceback: every route,
with malformed and mistyped bodies, odd path segments and query values, and broken credentials.
The cases are generated from a fixed seed, so a failure reproduces."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import jwt
import pytest
import requests

from runkeys_sandbox.server import bodies
from runkeys_sandbox.server.app import ROUTES
from tests.sandbox.conftest import Seeded

BAD_BODIES: list[bytes] = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'"text"',
    b"12",
    b"\xff\xfe\x00garbage",
    b"[" * 5000 + b"]" * 5000,  # deeper than the JSON parser's recursion limit
    b'{"encrypted_value": NaN, "key_id": Infinity}',
    json.dumps({"key": None, "title": ["x"], "read_only": "yes"}).encode(),
    json.dumps({"wait_timer": 10**40, "reviewers": "all"}).encode(),
    json.dumps({"deployment_branch_policy": []}).encode(),
    json.dumps({"repositories": [1, None], "repository_ids": ["a"], "permissions": []}).encode(),
    json.dumps({"repositories": "app", "permissions": {"secrets": 1}}).encode(),
    json.dumps({"encrypted_value": "A" * 100_000, "key_id": None}).encode(),
]

ODD_SEGMENTS = [
    "%00",
    "%ff",
    "..",
    "%2e%2e",
    "x" * 300,
    "%F0%9F%94%91",
    "a%2Fb",
    "-1",
    "1e3",
    "%20",
]


def concrete(template: str, values: dict[str, str]) -> str:
    path = template
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice(
        ["int", "str", "bool", "null", "list", "dict", "float"] if depth < 3 else ["int", "str"]
    )
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "dict":
        keys = [
            "key",
            "key_id",
            "encrypted_value",
            "title",
            "read_only",
            "visibility",
            "wait_timer",
            "reviewers",
            "permissions",
            "repositories",
            "repository_ids",
            "x",
        ]
        return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return {
        "int": rng.randint(-(2**70), 2**70),
        "str": "".join(rng.choice("aZ9_-/%é\n") for _ in range(rng.randint(0, 12))),
        "bool": rng.random() < 0.5,
        "null": None,
        "float": rng.random() * 1e300,
    }[kind]


class Credentials:
    """The credential each kind of route wants (a fresh token where a route revokes it)."""

    def __init__(self, seeded: Seeded) -> None:
        self.seeded = seeded
        org_app = seeded.sb.add_app()
        self.org_installation = seeded.sb.install(
            org_app, [seeded.repo], {"organization_secrets": "write"}
        )
        now = int(time.time())
        claims = {"iat": now - 60, "exp": now + 500, "iss": str(seeded.app.id)}
        self.app_jwt = jwt.encode(claims, seeded.app.private_key, algorithm="RS256")
        self.repo = seeded.token()

    def __call__(self, access: str) -> str:
        if access == "app":
            return self.app_jwt
        if access == "org":
            return self.seeded.sb.create_installation_token(self.org_installation)
        if access == "self-token":
            return self.seeded.token()
        return self.repo


@pytest.fixture
def credentials(seeded: Seeded) -> Credentials:
    seeded.api("PUT", "/repos/octo/app/environments/prod", seeded.token())
    return Credentials(seeded)


def test_bad_bodies_on_every_route(seeded: Seeded, credentials: Credentials) -> None:
    run = seeded.sb.add_workflow_run(seeded.repo)
    values = {
        "owner": "octo",
        "repo": "app",
        "environment_name": "prod",
        "secret_name": "NAME",
        "key_id": "1",
        "run_id": str(run.id),
        "attempt_number": "1",
        "org": "octo",
        "username": "octo",
        "installation_id": str(seeded.installation.id),
        "plan": "p",
        "job": "j",
    }
    rng = random.Random(20260101)
    bodies = BAD_BODIES + [json.dumps(random_json(rng)).encode() for _ in range(10)]
    for route in ROUTES:
        path = concrete(route.template, values)
        for body in bodies:
            answer = seeded.api(
                route.method,
                path,
                credentials(route.access),
                data=body,
                headers={"Content-Type": "application/json"},
            )
            assert answer.status_code < 500, (route.method, path, body[:80], answer.text[:200])
            if answer.status_code >= 400 and not path.startswith("/_services/"):
                assert isinstance(answer.json()["message"], str)
                assert "Traceback" not in answer.text
    statuses = {r.status for r in seeded.sb.requests if not r.path.startswith("/_services/")}
    assert {400, 422, 200, 201, 204} <= statuses  # the bodies reached the parsers and handlers
    assert 401 not in statuses  # every request was authenticated: the handlers saw them all
    assert [r for r in seeded.sb.requests if r.unexpected_error] == []


def test_odd_path_segments_and_queries(seeded: Seeded, credentials: Credentials) -> None:
    for route in ROUTES:
        for odd in ODD_SEGMENTS:
            values = dict.fromkeys(
                [
                    "owner",
                    "repo",
                    "environment_name",
                    "secret_name",
                    "key_id",
                    "run_id",
                    "attempt_number",
                    "org",
                    "username",
                    "installation_id",
                    "plan",
                    "job",
                ],
                odd,
            )
            path = concrete(route.template, values)
            query = f"?per_page={odd}&page={odd}&status={odd}&audience={odd}"
            answer = seeded.api(route.method, path + query, credentials(route.access), data=b"{}")
            assert answer.status_code < 500, (route.method, path, answer.text[:200])
    for raw in [
        "/",
        "/repos",
        "/repos/octo/app/",
        "//repos//octo",
        "/repositories/abc/keys",
        "/repositories/1/keys",
    ]:
        answer = seeded.api("GET", raw, credentials("repo"))
        assert answer.status_code in (200, 404), raw


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "token",
        "Basic dXNlcjpwYXNz",
        "Bearer eyJ.a.b",
        "Bearer eyJhbGciOiJub25lIn0..",
        "Bearer " + "A" * 10_000,
        "Bearer ghs_\u00e9",
        "bearer   spaced   out",
    ],
)
def test_broken_credentials_are_401(seeded: Seeded, authorization: str) -> None:
    for path in ("/repos/octo/app/actions/secrets", "/app", "/installation/token"):
        method = "DELETE" if path == "/installation/token" else "GET"
        answer = requests.request(
            method,
            seeded.sb.url + path,
            headers={"Authorization": authorization.encode("utf-8")},
            timeout=10,
        )
        assert answer.status_code == 401, (path, authorization[:30])
        assert answer.json()["message"] in (
            "Bad credentials",
            "A JSON web token could not be decoded",
        )


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b'{"a": [1, {"b": 2}]}', 3),
        (b'{"a": "[[[[{{{{", "b": "\\"[["}', 1),  # brackets inside strings, escaped quotes
        (b"[" * 5000 + b"]" * 5000, 5000),
        (b"12", 0),
    ],
)
def test_nesting_is_measured_outside_strings(text: bytes, depth: int) -> None:
    """The sandbox refuses bodies nested past `MAX_NESTING` before parsing them."""
    assert bodies._nesting(text) == depth
