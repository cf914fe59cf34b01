"""The stand-in as a server: dot segments are resolved before routing (RFC 3986), `%2F` stays
inside its segment."""

from __future__ import annotations

import http.client

import pytest

from tests.sandbox.conftest import Seeded


def raw(seeded: Seeded, method: str, path: str) -> int:
    """A request with its path exactly as written: requests would resolve `..` itself."""
    host, port = seeded.sb.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, headers={"Authorization": f"Bearer {seeded.token()}"})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize("segment", ["..", ".", "%2E%2E", "%2e", ".%2e", "x/..", "x/%2e%2e"])
def test_a_dot_segment_is_never_an_environment(seeded: Seeded, segment: str) -> None:
    """`environments/..` is `/repos/octo/app`, which has no PUT: GitHub would not make an
    environment of it either."""
    assert raw(seeded, "PUT", f"/repos/octo/app/environments/{segment}") == 404
    assert seeded.sb.environment_names(seeded.repo) == []


def test_a_dot_segment_moves_the_request_elsewhere(seeded: Seeded) -> None:
    seeded.github().get_repo("octo/app").create_secret("KEPT", "v")
    path = "/repos/octo/app/environments/../actions/secrets/KEPT"
    assert raw(seeded, "DELETE", path) == 204  # the repository's own secret
    assert seeded.sb.secret_value(seeded.repo, "KEPT") is None
    assert seeded.sb.requests[-1].path == path  # recorded as it was sent


def test_an_encoded_slash_stays_inside_its_segment(seeded: Seeded) -> None:
    assert raw(seeded, "PUT", "/repos/octo/app/environments/a%2F..") == 200
    assert raw(seeded, "PUT", "/repos/octo/app/environments/%2E%2E%2Fx") == 200
    assert seeded.sb.environment_names(seeded.repo) == ["../x", "a/.."]
