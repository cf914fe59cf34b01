"""The stand-in's secondary rate limits, as GitHub documents them
(https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits):
off unless asked for; then writes a minute and an hour, points a minute (a write 5, a read 1)
and concurrent requests per credential, refused with 403/429, `Retry-After` and GitHub's message,
and counted. Time moves by the sandbox's clock offset, not by waiting."""

from __future__ import annotations

import threading

import pytest
import requests

from runkeys_sandbox.server.sandbox import SecondaryLimits
from tests.sandbox.conftest import Seeded

ENV = "/repos/octo/app/environments/e{}"
READ = "/repos/octo/app/environments"
MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)


def write(seeded: Seeded, token: str, n: int = 0) -> requests.Response:
    return seeded.api("PUT", ENV.format(n), token, json={})


def assert_refused(response: requests.Response, status: int, retry_after: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["message"].startswith(MESSAGE)
    assert response.headers["X-GitHub-Request-Id"] in body["message"]
    assert body["documentation_url"].endswith("#about-secondary-rate-limits")
    assert response.headers["Retry-After"] == str(retry_after)


def test_off_by_default(seeded: Seeded) -> None:
    token = seeded.token()
    statuses = {write(seeded, token, i).status_code for i in range(120)}
    assert statuses == {200}
    assert seeded.sb.rate_limit_refusals() == {}


def test_writes_a_minute(seeded: Seeded) -> None:
    sb = seeded.sb
    sb.enforce_rate_limits(SecondaryLimits(writes_per_minute=3))
    token = seeded.token()
    for i in range(3):  # at 0, 20 and 40 s
        assert write(seeded, token, i).status_code == 200
        sb.advance_clock(20 if i < 2 else 0)
    refused = write(seeded, token, 3)
    assert_refused(refused, 403, 20)  # the first write is a minute old 20 s from now
    assert refused.headers["X-RateLimit-Remaining"] == "4997"  # refused: not charged
    assert seeded.api("GET", READ, token).status_code == 200  # reads are not writes
    other = seeded.sb.install(seeded.app, [seeded.sb.add_repository("else/where")])
    elsewhere = seeded.sb.create_installation_token(other)
    assert seeded.api("PUT", "/repos/else/where/environments/x", elsewhere, json={}).ok
    sb.advance_clock(20)  # a minute after the first write
    assert write(seeded, token, 4).status_code == 200
    assert_refused(write(seeded, token, 5), 403, 20)  # the one at 20 s is still in it
    key = f"installation:{seeded.installation.id}"
    assert sb.rate_limit_refusals() == {(key, "writes a minute"): 2}


def test_writes_an_hour(seeded: Seeded) -> None:
    seeded.sb.enforce_rate_limits(SecondaryLimits(writes_per_hour=4))
    token = seeded.token()
    for i in range(4):
        assert write(seeded, token, i).status_code == 200
        seeded.sb.advance_clock(60)
    assert_refused(write(seeded, token, 9), 403, 3600 - 240)
    seeded.sb.advance_clock(3600 - 240)
    assert write(seeded, seeded.token(), 9).status_code == 200  # (the first token expired)


def test_points_a_minute_with_a_write_costing_five(seeded: Seeded) -> None:
    seeded.sb.enforce_rate_limits(SecondaryLimits(points_per_minute=12, status=429))
    token = seeded.token()
    assert write(seeded, token, 1).status_code == 200  # 5
    seeded.sb.advance_clock(10)
    assert write(seeded, token, 2).status_code == 200  # 10
    assert seeded.api("GET", READ, token).status_code == 200  # 11
    assert seeded.api("GET", READ, token).status_code == 200  # 12
    assert_refused(seeded.api("GET", READ, token), 429, 50)  # 13 > 12: the first write ages
    seeded.sb.advance_clock(50)
    assert seeded.api("GET", READ, token).status_code == 200
    assert_refused(write(seeded, token, 3), 429, 10)  # 8 + 5 > 12: until the write at 10 s ages


def test_compressed_time_scales_the_windows_and_the_primary_hour(seeded: Seeded) -> None:
    seeded.sb.enforce_rate_limits(SecondaryLimits(writes_per_minute=1), time_factor=60)
    token = seeded.token()
    first = write(seeded, token, 1)
    assert first.status_code == 200
    assert int(first.headers["X-RateLimit-Reset"]) - seeded.sb.clock() <= 61  # a minute's hour
    assert_refused(write(seeded, token, 2), 403, 1)
    seeded.sb.advance_clock(1.0)
    assert write(seeded, token, 2).status_code == 200


def test_concurrent_requests(seeded: Seeded) -> None:
    seeded.sb.enforce_rate_limits(SecondaryLimits(concurrent=2))
    token = seeded.token()
    seeded.sb.inject_fault("GET", READ + "$", status=None, delay=1.0, times=2)
    answers: list[int] = []
    slow = [
        threading.Thread(target=lambda: answers.append(seeded.api("GET", READ, token).status_code))
        for _ in range(2)
    ]
    for thread in slow:
        thread.start()
    threading.Event().wait(0.3)  # both are in their delay now
    third = seeded.api("GET", "/repos/octo/app/keys", token)
    for thread in slow:
        thread.join()
    assert answers == [200, 200]
    assert_refused(third, 403, 60)
    assert seeded.api("GET", "/repos/octo/app/keys", token).status_code == 200
    key = f"installation:{seeded.installation.id}"
    assert seeded.sb.rate_limit_refusals() == {(key, "concurrent requests"): 1}


def test_the_documented_status_only() -> None:
    with pytest.raises(ValueError, match="403 or 429"):
        SecondaryLimits(status=500)
