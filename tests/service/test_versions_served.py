"""The service says its version on every answer, and refuses an action of another major version
before it looks at the token (so the token is not spent); a caller that says no version is
served (curl, a proxy's probe)."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from runkeys import __version__
from tests.service.conftest import GitHub
from tests.service.kit import body, js


def major_minor(version: str) -> tuple[int, int]:
    found = re.match(r"(\d+)\.(\d+)\.\d+", version)
    assert found is not None, version
    return int(found[1]), int(found[2])


def other_series(version: str) -> str:
    """A version the service must refuse: the next major, or before 1.0 the next minor."""
    major, minor = major_minor(version)
    return f"0.{minor + 1}.0" if major == 0 else f"{major + 1}.0.0"


def same_series(version: str) -> str:
    """A version the service must serve: the same major (and minor before 1.0), patch 99."""
    major, minor = major_minor(version)
    return f"{major}.{minor}.99"


def test_an_action_of_another_major_version_is_refused_before_its_token_is_spent(
    client: FlaskClient, github: GitHub
) -> None:
    headers = github.auth(github.claims())
    lease = body(github.lease())
    refused = client.post(
        "/v1/leases", json=lease, headers={**headers, "Runkeys-Version": other_series(__version__)}
    )
    assert refused.status_code == 400
    assert js(refused)["error"] == "incompatible_version"
    message = js(refused)["message"]
    assert f"the action runs runkeys {other_series(__version__)}" in message
    assert f"this service runs runkeys {__version__}" in message
    # The same token, from an action of the same series, is still good: it was not spent.
    served = client.post(
        "/v1/leases", json=lease, headers={**headers, "Runkeys-Version": same_series(__version__)}
    )
    assert served.status_code == 201, served.get_data(as_text=True)


@pytest.mark.parametrize("said", ["", "v1", "1.0", "latest"])
def test_a_version_that_is_not_semver_is_refused(
    client: FlaskClient, github: GitHub, said: str
) -> None:
    headers = {**github.auth(github.claims()), "Runkeys-Version": said}
    refused = client.post("/v1/keys", json={}, headers=headers)
    assert (refused.status_code, js(refused)["error"]) == (400, "incompatible_version")


def test_a_caller_that_says_no_version_is_served(client: FlaskClient, github: GitHub) -> None:
    response = client.post(
        "/v1/leases", json=body(github.lease()), headers=github.auth(github.claims())
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/nowhere"), ("POST", "/webhook")],
)
def test_every_answer_says_the_services_version(
    client: FlaskClient, method: str, path: str
) -> None:
    response = client.open(path, method=method)
    assert response.headers["Runkeys-Version"] == __version__
