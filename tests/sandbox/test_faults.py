"""Injected faults, and PyGithub's GithubRetry recovering from them as it would on GitHub
(honouring Retry-After). Retries wait on a recorded clock: what they wait is asserted, not
how long the test took."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import requests
import urllib3.util.retry
from github import GithubRetry, RateLimitExceededException

from tests.sandbox.conftest import Seeded

PUBLIC_KEY = r"/actions/secrets/public-key$"


def retrying(**kwargs: float) -> GithubRetry:
    return GithubRetry(total=3, backoff_factor=0, **kwargs)


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait urllib3's retry makes (GithubRetry waits through it), recorded, not slept."""
    waits: list[float] = []
    clock = SimpleNamespace(time=time.time, sleep=waits.append)
    monkeypatch.setattr(urllib3.util.retry, "time", clock)
    return waits


def test_server_errors_are_retried(seeded: Seeded) -> None:
    seeded.sb.inject_fault("GET", PUBLIC_KEY, status=502, times=2)
    repo = seeded.github(retry=retrying()).get_repo("octo/app")
    repo.create_secret("AFTER_502", "v")
    assert seeded.sb.secret_value(seeded.repo, "AFTER_502") == "v"
    statuses = [(r.status, r.injected) for r in seeded.sb.requests if r.path.endswith("public-key")]
    assert statuses == [(502, True), (502, True), (200, False)]


def test_secondary_rate_limit_with_retry_after(seeded: Seeded, slept: list[float]) -> None:
    seeded.sb.inject_fault("PUT", r"/actions/secrets/", status=403, retry_after=7)
    repo = seeded.github(retry=retrying()).get_repo("octo/app")
    repo.create_secret("AFTER_403", "v")
    assert slept == [7]  # Retry-After, once: not the default 60 s, not the configured wait
    refused = next(r for r in seeded.sb.requests if r.status == 403)
    assert refused.response_body["message"].startswith("You have exceeded a secondary rate limit")
    assert refused.response_headers["Retry-After"] == "7"
    assert seeded.sb.secret_value(seeded.repo, "AFTER_403") == "v"


def test_secondary_rate_limit_without_retry_after_waits_the_configured_time(
    seeded: Seeded, slept: list[float]
) -> None:
    seeded.sb.inject_fault("GET", PUBLIC_KEY, status=403)
    repo = seeded.github(retry=retrying(secondary_rate_wait=42)).get_repo("octo/app")
    repo.create_secret("AFTER_WAIT", "v")
    assert slept == [42]
    assert seeded.sb.secret_value(seeded.repo, "AFTER_WAIT") == "v"


def test_429_with_retry_after(seeded: Seeded) -> None:
    seeded.sb.inject_fault("*", PUBLIC_KEY, status=429, retry_after=0)
    seeded.github(retry=retrying()).get_repo("octo/app").create_secret("AFTER_429", "v")
    assert [r.status for r in seeded.sb.requests][:2] == [429, 200]


def test_without_retries_the_fault_surfaces(seeded: Seeded) -> None:
    seeded.sb.inject_fault("GET", PUBLIC_KEY, status=403)
    with pytest.raises(RateLimitExceededException):
        seeded.github().get_repo("octo/app").create_secret("X", "v")


def test_always_and_clear(seeded: Seeded) -> None:
    seeded.sb.inject_fault("GET", PUBLIC_KEY, status=500, times=None)
    client = seeded.github(retry=retrying())
    with pytest.raises(requests.exceptions.RetryError, match="too many 500 error responses"):
        client.get_repo("octo/app").create_secret("X", "v")
    assert sum(r.injected for r in seeded.sb.requests) == 4  # the first try and three retries
    seeded.sb.clear_faults()
    client.get_repo("octo/app").create_secret("X", "v")


def test_delay_only(seeded: Seeded) -> None:
    seeded.sb.inject_fault("GET", PUBLIC_KEY, status=None, delay=0.3)
    started = time.monotonic()
    answer = seeded.api("GET", "/repos/octo/app/actions/secrets/public-key", seeded.token())
    assert answer.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_custom_fault_body_and_method_filter(seeded: Seeded) -> None:
    seeded.sb.inject_fault(
        "DELETE",
        r"/keys/",
        status=503,
        body={"message": "Service Unavailable", "documentation_url": "x"},
    )
    token = seeded.token()
    assert seeded.api("GET", "/repos/octo/app/keys", token).status_code == 200
    answer = seeded.api("DELETE", "/repos/octo/app/keys/1", token)
    assert (answer.status_code, answer.json()["message"]) == (503, "Service Unavailable")


@pytest.mark.parametrize(
    "kwargs",
    [{"status": 200}, {"retry_after": 0.5}, {"times": 0}, {"status": 302}],
)
def test_fault_arguments_are_checked(seeded: Seeded, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"status|retry_after|times"):
        seeded.sb.inject_fault("GET", ".*", **kwargs)  # type: ignore[arg-type]


def test_request_log(seeded: Seeded) -> None:
    token = seeded.token()
    seeded.api("GET", "/repos/octo/app/actions/secrets?per_page=5&page=1", token)
    (entry,) = seeded.sb.requests
    assert (entry.method, entry.path, entry.status) == (
        "GET",
        "/repos/octo/app/actions/secrets",
        200,
    )
    assert entry.query == {"per_page": "5", "page": "1"}
    assert entry.operation == "GET /repos/{owner}/{repo}/actions/secrets"
    assert entry.caller == "installation"
    assert entry.response_body == {"total_count": 0, "secrets": []}
    assert token not in repr(entry)
    seeded.sb.clear_requests()
    assert seeded.sb.requests == []
