"""`runkeys.github.pacing`: per installation, calls wait for GitHub's secondary limits (writes a
minute and an hour, points a minute, concurrency), for the primary budget GitHub's headers
report, and for a `Retry-After`. The clock is the only thing faked; the oracles are GitHub's
documented numbers, worked out here by hand."""

from __future__ import annotations

import pytest
from github import GithubException

from runkeys.github.pacing import InstallationPace, Limits, Pacing, PacingWait


class Clock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def calls(pace: InstallationPace, n: int, *, write: bool, answer_after: float = 0.0) -> None:
    """`n` calls in a row, each answered `answer_after` seconds after it was sent."""
    for _ in range(n):
        with pace.request(write=write):
            clock = pace._clock
            assert isinstance(clock, Clock)
            clock.now += answer_after


def test_the_81st_write_in_a_minute_waits_until_the_first_answer_is_a_minute_old() -> None:
    clock = Clock()
    pace = Pacing(clock=clock, sleep=clock.sleep).of(7)
    calls(pace, 80, write=True)
    assert clock.slept == []
    clock.now += 15
    calls(pace, 1, write=True)
    assert clock.slept == [45.0]
    state = pace.state()
    assert (state.waits, state.waited_seconds) == (1, 45.0)
    assert state.writes_last_minute == 1  # the 80 of t=0 aged out at t=60


def test_a_window_counts_from_the_answer_not_the_send() -> None:
    """GitHub counts a request when it arrives, somewhere between send and answer: counting
    from the answer is the only side that never undercounts."""
    clock = Clock()
    pace = Pacing(Limits(writes_per_minute=2), clock=clock, sleep=clock.sleep).of(1)
    calls(pace, 2, write=True, answer_after=3.0)  # sent at 0 and 3, answered at 3 and 6
    calls(pace, 1, write=True)  # at 6: the first answer (3) is a minute old at 63
    assert clock.slept == [57.0]


def test_writes_an_hour_hold_after_five_hundred() -> None:
    clock = Clock()
    pace = Pacing(clock=clock, sleep=clock.sleep).of(1)
    for _ in range(500):
        calls(pace, 1, write=True)
        clock.now += 1.0  # 60 a minute: under the minute's 80
    start = clock.now - 500.0
    assert clock.slept == []
    with pytest.raises(PacingWait) as caught:  # 3100 s more: longer than a call waits
        calls(pace, 1, write=True)
    assert caught.value.retry_after == pytest.approx(start + 3600 - clock.now)
    assert caught.value.retryable


def test_points_hold_reads_at_900_a_minute_and_a_write_costs_five() -> None:
    clock = Clock()
    pace = Pacing(clock=clock, sleep=clock.sleep).of(1)
    calls(pace, 896, write=False)
    calls(pace, 1, write=False)  # 897 points
    assert clock.slept == []
    calls(pace, 1, write=True)  # 902 > 900: waits until enough reads age out
    assert clock.slept == [60.0]
    assert pace.state().points_last_minute == 5


def test_reads_do_not_wait_for_writes_a_minute() -> None:
    clock = Clock()
    pace = Pacing(clock=clock, sleep=clock.sleep).of(1)
    calls(pace, 80, write=True)  # 400 points
    calls(pace, 100, write=False)  # 500 points, no write
    assert clock.slept == []


def test_primary_budget_from_headers_waits_for_reset_near_its_end() -> None:
    clock = Clock()
    limits = Limits(primary_reserve=10, max_wait=600)
    pace = Pacing(limits, clock=clock, sleep=clock.sleep).of(1)
    reset = clock.now + 300
    with pace.request(write=False) as answer:
        answer(200, {"X-RateLimit-Remaining": "12", "X-RateLimit-Reset": str(int(reset))})
    calls(pace, 2, write=False)  # 11, then 10 left by its own count
    assert clock.slept == []
    calls(pace, 1, write=False)  # at the reserve: until Reset
    assert clock.slept == [300.0]
    assert pace.state().primary_remaining is None  # a new hour: unknown until an answer


def test_a_wait_for_reset_beyond_max_wait_raises_instead_of_sleeping() -> None:
    clock = Clock()
    pace = Pacing(clock=clock, sleep=clock.sleep).of(1)
    with pace.request(write=True) as answer:
        answer(200, {"x-ratelimit-remaining": "3", "x-ratelimit-reset": str(clock.now + 1800)})
    with pytest.raises(PacingWait, match="primary rate limit"):
        calls(pace, 1, write=True)
    assert clock.slept == []


def test_retry_after_on_a_refusal_holds_every_call_of_the_installation_only() -> None:
    clock = Clock()
    pacing = Pacing(clock=clock, sleep=clock.sleep)
    pace = pacing.of(1)
    with pytest.raises(GithubException), pace.request(write=True):
        raise GithubException(429, {"message": "slow down"}, {"retry-after": "5"})
    calls(pacing.of(2), 1, write=True)  # another installation: not held
    assert clock.slept == []
    calls(pace, 1, write=False)  # a read waits too
    assert clock.slept == [5.0]
    assert pace.state().refusals == 1
    assert pacing.of(2).state().refusals == 0


def test_a_secondary_refusal_without_retry_after_waits_secondary_wait() -> None:
    clock = Clock()
    pace = Pacing(clock=clock, sleep=clock.sleep).of(1)
    body = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes"}
    with pytest.raises(GithubException), pace.request(write=True):
        raise GithubException(403, body, {"x-ratelimit-remaining": "4000"})
    calls(pace, 1, write=True)
    assert clock.slept == [60.0]


def test_a_permission_refusal_is_no_rate_limit() -> None:
    clock = Clock()
    pace = Pacing(clock=clock, sleep=clock.sleep).of(1)
    body = {"message": "Resource not accessible by integration"}
    with pytest.raises(GithubException), pace.request(write=True):
        raise GithubException(403, body, {"x-ratelimit-remaining": "4000"})
    calls(pace, 1, write=True)
    assert clock.slept == []
    assert pace.state().refusals == 0


def test_compressed_time_scales_every_window() -> None:
    clock = Clock()
    limits = Limits(writes_per_minute=3).compressed(60)  # a GitHub minute per second
    pace = Pacing(limits, clock=clock, sleep=clock.sleep).of(1)
    calls(pace, 4, write=True)
    assert clock.slept == [pytest.approx(1.0)]
    with pytest.raises(GithubException), pace.request(write=True):
        raise GithubException(429, None, {})
    calls(pace, 1, write=True)
    assert clock.slept[-1] == pytest.approx(1.0)  # secondary_wait, 60 s of GitHub's


def test_unanswered_calls_count_and_hold_at_the_concurrency_limit() -> None:
    clock = Clock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        raise RuntimeError("waited")  # one thread: nothing would ever answer

    pace = Pacing(Limits(concurrent=2), clock=clock, sleep=sleep).of(1)
    with pace.request(write=False), pace.request(write=False):
        assert pace.state().in_flight == 2
        with pytest.raises(RuntimeError, match="waited"), pace.request(write=False):
            pass
    assert slept == [pytest.approx(0.1)]
    assert pace.state().in_flight == 0
    with pace.request(write=False):
        pass
    assert len(slept) == 1


def test_one_refusal_seen_twice_counts_once() -> None:
    """urllib3's retry reports the answer it gives up on, then PyGithub raises it."""
    clock = Clock()
    pace = Pacing(clock=clock, sleep=clock.sleep).of(1)
    headers = {"Retry-After": "3", "X-GitHub-Request-Id": "A:B"}
    pace.observe(429, headers)
    with pytest.raises(GithubException), pace.request(write=True):  # held 3 s first
        raise GithubException(429, None, headers)
    pace.observe(429, {**headers, "X-GitHub-Request-Id": "C:D"})
    assert pace.state().refusals == 2
    assert clock.slept == [3.0]


def test_githubs_remaining_replaces_the_own_count_less_the_calls_unanswered() -> None:
    clock = Clock()
    pace = Pacing(clock=clock, sleep=clock.sleep).of(1)
    reset = str(clock.now + 600)
    with pace.request(write=True) as answer:
        answer(200, {"X-RateLimit-Remaining": "100", "X-RateLimit-Reset": reset})
    calls(pace, 3, write=True)  # refused before GitHub counted them, say: 97 by its own count
    assert pace.state().primary_remaining == 97
    with pace.request(write=False) as first, pace.request(write=False):
        first(200, {"X-RateLimit-Remaining": "99", "X-RateLimit-Reset": reset})
        assert pace.state().primary_remaining == 98  # 99, less the second still unanswered
    with pace.request(write=False) as late:
        late(200, {"X-RateLimit-Remaining": "5000", "X-RateLimit-Reset": str(clock.now - 1)})
    assert pace.state().primary_remaining == 97  # an answer of the hour before: ignored


def test_ready_in_tells_the_wait_without_waiting_or_counting() -> None:
    clock = Clock()
    pace = Pacing(Limits(writes_per_minute=2), clock=clock, sleep=clock.sleep).of(1)
    assert pace.ready_in(write=True) == 0.0
    calls(pace, 2, write=True)
    clock.now += 10
    assert pace.ready_in(write=True) == 50.0
    assert pace.ready_in(write=False) == 0.0  # reads are not held by writes a minute
    assert pace.ready_in(write=True) == 50.0  # asking spent nothing
    assert (clock.slept, pace.state().writes_last_minute) == ([], 2)
