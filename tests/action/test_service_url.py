"""The step sends the job's OIDC token to `service-url`: plain http:// only to this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.action.conftest import GitHub
from tests.action.service import Service

KEYS = "A: {provider: random, ttl: 10m, lifetime: run}"


@pytest.mark.parametrize(
    "url",
    [
        "http://runkeys.example.com",
        "http://127.0.0.1.example.com",  # a name that starts like a loopback address
        "http://localhost.example.com",
        "http://0.0.0.0:8080",
        "http://10.0.0.1:8080",
        "http://[::ffff:10.0.0.1]:8080",
    ],
)
def test_plain_http_elsewhere_is_refused_before_anything_is_minted(
    github: GitHub, service: Service, url: str
) -> None:
    run = github.step.run({"keys": KEYS, "service-url": url})
    assert run.returncode == 1
    ((title, message),) = run.annotations("error")
    assert title == "runkeys: Invalid configuration"
    assert message.startswith("input `service-url`: plain http:// to ")
    assert "OIDC token" in message
    assert "use that URL; plain http:// is accepted only on this machine" in message
    assert run.masks == []  # no key minted, no token asked for
    assert run.env == {}
    assert [r.path for r in github.sandbox.requests] == []
    assert service.faults.answered == []


@pytest.mark.parametrize(
    ("host", "url_host"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.2", "127.0.0.2"),
        ("127.0.0.1", "localhost"),
        ("::1", "[::1]"),
    ],
)
def test_plain_http_on_loopback_is_used(
    github: GitHub, service: Service, tmp_path: Path, host: str, url_host: str
) -> None:
    own = Service(github.sandbox, github.app, tmp_path / "own", host=host)
    port = own.url.rpartition(":")[2]
    try:
        run = github.step.run({"keys": KEYS, "service-url": f"http://{url_host}:{port}"})
        assert run.returncode == 0, run.annotations("error")
        assert own.faults.answered == [("/v1/leases", 201)]
        assert sorted(own.leases()) == ["A"]
    finally:
        own.stop()
    assert service.faults.answered == []
