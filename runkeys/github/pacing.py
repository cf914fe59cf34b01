"""Pacing GitHub calls per installation, so that the service's writes stay within GitHub's limits
(https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api) instead of
drawing refusals: the primary hourly budget as GitHub's `X-RateLimit-Remaining`/`Reset` report
it, the secondary limits (content-creating requests a minute and an hour, points a minute,
concurrent requests), and any `Retry-After` GitHub sends anyway.

A call waits before it is sent (`InstallationPace.request`); a wait longer than
`Limits.max_wait` raises `PacingWait` (retryable) instead, so a worker does not sit on its claim
for an hour. Only the calls made through a pace wait: a provider's revoke does not."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol

from github import GithubException

from runkeys.errors import GitHubError

INFLIGHT = math.inf  # an entry's time while its request is unanswered: it never ages out


# Repeated on purpose: the stand-in states the same numbers (runkeys_sandbox/server/ratelimit.py)
# without importing these, so a wrong one here is caught against it.
@dataclass(frozen=True)
class Limits:
    """GitHub's documented limits, per installation; `minute` is the length of GitHub's minute
    in seconds of the clock (the stand-in can compress time for benchmarks)."""

    writes_per_minute: int = 80
    writes_per_hour: int = 500
    points_per_minute: int = 900
    write_points: int = 5
    read_points: int = 1
    concurrent: int = 100
    primary_reserve: int = 10  # requests left in the hour when calls start waiting for Reset
    secondary_wait: float = 60.0  # after a secondary refusal without Retry-After (GitHub: ≥ 1 min)
    max_wait: float = 120.0  # a longer wait raises `PacingWait`
    minute: float = 60.0

    @property
    def hour(self) -> float:
        return 60 * self.minute

    def compressed(self, factor: float) -> Limits:
        """The same limits with GitHub's time running `factor` times faster."""
        if factor <= 0:
            raise ValueError("the time factor must be > 0")
        return replace(
            self,
            minute=self.minute / factor,
            secondary_wait=self.secondary_wait / factor,
            max_wait=self.max_wait / factor,
        )


class PacingWait(GitHubError):
    """GitHub's budget for an installation is spent for longer than a call may wait."""

    def __init__(self, installation: object, wait: float, why: str) -> None:
        super().__init__(
            f"GitHub's {why} for installation {installation} is spent for {wait:.1f} s more; "
            "not waiting that long in one call",
            status=429,
            fix="nothing to do: the call is tried again once the budget allows it",
            retry_after=wait,
        )
        self.wait = wait


class PaceEvents(Protocol):
    """What a pace reports as it happens (metrics, which add processes up, count these)."""

    def called(self, installation: object, *, write: bool) -> None: ...
    def waited(self, installation: object, seconds: float, limit: str) -> None: ...
    def refused(self, installation: object) -> None: ...
    def remaining(self, installation: object, remaining: int) -> None: ...


@dataclass(frozen=True)
class PaceState:
    """What a pace knows and did, for metrics and `runkeys status`."""

    installation: object
    primary_remaining: int | None  # None: no answer seen in the current hour
    primary_reset: float | None  # epoch seconds
    writes_last_minute: int
    points_last_minute: int
    in_flight: int
    waits: int  # calls that waited for a limit
    waited_seconds: float
    refusals: int  # 403/429 rate-limit answers drawn all the same
    hold_until: float  # no call before this (a `Retry-After`)


@dataclass
class _Entry:
    at: float  # when the answer came (INFLIGHT until then): a limit's window counts from it
    write: bool


class InstallationPace:
    def __init__(
        self,
        installation: object,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        events: PaceEvents | None = None,
    ) -> None:
        self.installation = installation
        self.limits = limits
        self.events = events
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []
        self._remaining: int | None = None
        self._reset: float | None = None
        self._hold_until = 0.0
        self._waits = 0
        self._waited = 0.0
        self._waited_before = 0.0  # by the caller, before its `request` (`waited_before`)
        self._refusals = 0
        self._last_refusal: str | None = None

    @contextmanager
    def request(self, *, write: bool) -> Iterator[Callable[[int, Mapping[str, Any]], None]]:
        """Wait until a call may go, then count it; the body reports GitHub's answer through
        the callable it gets (a `GithubException` is read on its way out)."""
        entry = self._admit(write)
        try:
            yield self.observe
        except GithubException as exc:
            self.observe(exc.status, exc.headers or {}, exc.data)
            raise
        finally:
            with self._lock:
                entry.at = self._clock()

    def ready_in(self, *, write: bool) -> float:
        """Seconds before a call could go (0: now), without waiting or counting one: for a
        worker to take another installation's work meanwhile rather than sleep."""
        with self._lock:
            now = self._clock()
            self._forget(now)
            return max(self._wait(now, write)[0], 0.0)

    def _admit(self, write: bool) -> _Entry:
        while True:
            with self._lock:
                now = self._clock()
                self._forget(now)
                wait, why = self._wait(now, write)
                before, self._waited_before = self._waited_before, 0.0
                if wait <= 0:
                    entry = _Entry(INFLIGHT, write)
                    self._entries.append(entry)
                    if self._remaining is not None:
                        self._remaining -= 1  # until GitHub's answer says exactly
                    if before > 0:  # the caller waited all of it: one wait all the same
                        self._count_wait(before, "writes a minute" if write else "points a minute")
                    break
                if wait > self.limits.max_wait:
                    raise PacingWait(self.installation, wait, why)
                self._count_wait(before + wait, why)
            self._sleep(wait)
        if self.events is not None:
            self.events.called(self.installation, write=write)
        return entry

    def waited_before(self, seconds: float) -> None:
        """Seconds the caller waited for this budget before its `request` (a worker that waits
        where new work can wake it): counted with that request's wait, as one."""
        with self._lock:
            self._waited_before += seconds

    def _count_wait(self, seconds: float, why: str) -> None:
        self._waits += 1
        self._waited += seconds
        if self.events is not None:
            self.events.waited(self.installation, seconds, why)

    def _forget(self, now: float) -> None:
        horizon = now - self.limits.hour
        self._entries = [e for e in self._entries if e.at > horizon]
        if self._reset is not None and now >= self._reset:
            self._remaining = self._reset = None  # a new hour: unknown until GitHub answers

    def _wait(self, now: float, write: bool) -> tuple[float, str]:
        """Seconds until a call may go (≤ 0: now), and which limit holds it."""
        limits = self.limits
        waits = [(self._hold_until - now, "Retry-After")]
        primary_low = self._remaining is not None and self._remaining <= limits.primary_reserve
        if self._reset is not None and primary_low:
            waits.append((self._reset - now, "primary rate limit"))
        in_flight = sum(1 for e in self._entries if e.at == INFLIGHT)
        if in_flight >= limits.concurrent:
            waits.append((limits.minute / 600, "concurrent requests"))
        cost = limits.write_points if write else limits.read_points
        points = [
            (e.at, limits.write_points if e.write else limits.read_points) for e in self._entries
        ]
        waits.append(
            (
                _window_wait(points, now, limits.minute, limits.points_per_minute, cost),
                "points a minute",
            )
        )
        if write:
            writes = [(e.at, 1) for e in self._entries if e.write]
            waits.append(
                (
                    _window_wait(writes, now, limits.minute, limits.writes_per_minute, 1),
                    "writes a minute",
                )
            )
            waits.append(
                (
                    _window_wait(writes, now, limits.hour, limits.writes_per_hour, 1),
                    "writes an hour",
                )
            )
        return max(waits)

    def observe(self, status: int, headers: Mapping[str, Any], data: Any = None) -> None:
        """Take in one of GitHub's answers: its primary budget, and a rate-limit refusal's
        `Retry-After` (or `secondary_wait` when a secondary refusal names no time)."""
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        refused = self._observe(status, lowered, _message(data))
        if self.events is not None:
            with self._lock:
                remaining = self._remaining
            if remaining is not None:
                self.events.remaining(self.installation, remaining)
            if refused:
                self.events.refused(self.installation)

    def _observe(self, status: int, lowered: Mapping[str, str], message: str) -> bool:
        """Take the answer in; whether it was a rate-limit refusal not seen before."""
        now = self._clock()
        with self._lock:
            remaining = _number(lowered.get("x-ratelimit-remaining"))
            reset = _number(lowered.get("x-ratelimit-reset"))
            # Not an answer of an old hour: GitHub's word, less the other calls sent and not yet
            # answered (this one is among the unanswered: it is still in its `request`).
            if remaining is not None and reset is not None and reset >= (self._reset or reset):
                others = sum(1 for e in self._entries if e.at == INFLIGHT) - 1
                self._remaining, self._reset = int(remaining) - max(others, 0), reset
            if status not in (403, 429):
                return False
            # The same answer can come twice: from the retry that gave up on it, then raised.
            answer_id = lowered.get("x-github-request-id")
            if answer_id is not None and answer_id == self._last_refusal:
                return False
            retry_after = _number(lowered.get("retry-after"))
            if retry_after is not None:
                self._hold_until = max(self._hold_until, now + retry_after)
            elif remaining == 0:
                pass  # the primary limit: `_wait` holds calls until Reset
            elif status == 429 or "secondary rate limit" in message:
                self._hold_until = max(self._hold_until, now + self.limits.secondary_wait)
            else:
                return False  # a refusal, not a rate limit
            self._refusals += 1
            self._last_refusal = answer_id
            return True

    def state(self) -> PaceState:
        with self._lock:
            now = self._clock()
            self._forget(now)
            minute = [
                e for e in self._entries if e.at == INFLIGHT or e.at > now - self.limits.minute
            ]
            return PaceState(
                installation=self.installation,
                primary_remaining=self._remaining,
                primary_reset=self._reset,
                writes_last_minute=sum(1 for e in minute if e.write),
                points_last_minute=sum(
                    self.limits.write_points if e.write else self.limits.read_points for e in minute
                ),
                in_flight=sum(1 for e in self._entries if e.at == INFLIGHT),
                waits=self._waits,
                waited_seconds=self._waited,
                refusals=self._refusals,
                hold_until=self._hold_until,
            )


class Pacing:
    """One `InstallationPace` per installation, made on first use."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        events: PaceEvents | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self._clock, self._sleep = clock, sleep
        self.events = events
        self._lock = threading.Lock()
        self._paces: dict[object, InstallationPace] = {}

    def of(self, installation: object) -> InstallationPace:
        with self._lock:
            pace = self._paces.get(installation)
            if pace is None:
                pace = InstallationPace(
                    installation,
                    self.limits,
                    clock=self._clock,
                    sleep=self._sleep,
                    events=self.events,
                )
                self._paces[installation] = pace
            return pace

    def states(self) -> list[PaceState]:
        with self._lock:
            paces = list(self._paces.values())
        return [pace.state() for pace in paces]


def _window_wait(
    entries: list[tuple[float, int]], now: float, window: float, limit: int, cost: int
) -> float:
    """Seconds until `cost` more fits under `limit` in every `window` ending then: the
    oldest answers age out first (an unanswered one never does; then a short poll)."""
    live = sorted((at, c) for at, c in entries if at == INFLIGHT or at + window > now)
    total = sum(c for _, c in live)
    wait = 0.0
    for at, c in live:
        if total + cost <= limit:
            return wait
        if at == INFLIGHT:
            return window / 600
        total -= c
        wait = at + window - now
    return wait if total + cost <= limit else window / 600


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _message(data: Any) -> str:
    return str(data.get("message") or "").lower() if isinstance(data, dict) else ""
