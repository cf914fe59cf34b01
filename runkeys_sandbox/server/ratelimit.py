"""GitHub's rate limits (https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api).

The primary limit: an hourly budget per credential, reported in `X-RateLimit-*` headers on every
answer and by `GET /rate_limit`, refused with 403 once spent. Always on.

The secondary limits, when a sandbox enforces them (off by default): content-creating requests
a minute and an hour, points a minute (a write costs 5, a read 1) and concurrent requests, per
credential, refused with 403 (or 429) with `Retry-After` and GitHub's message. Time can run
faster than the clock (`time_factor`: 60 makes GitHub's minute a second) for benchmarks."""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field

from runkeys_sandbox.server.errors import (
    PRIMARY_RATE_LIMIT_DOCS,
    SECONDARY_RATE_LIMIT,
    SECONDARY_RATE_LIMIT_DOCS,
    ApiError,
)

WINDOW = 3600

# Requests per hour, by kind of caller (GitHub's documented defaults).
DEFAULT_LIMITS = {
    "installation": 5000,
    "app": 5000,
    "pat": 5000,
    "workflow": 1000,
    "anonymous": 60,
}

READS = frozenset({"GET", "HEAD", "OPTIONS"})


# Repeated on purpose: the product's pace (runkeys/github/pacing.py) states the same numbers;
# the stand-in never imports the product's rules.
@dataclass(frozen=True)
class SecondaryLimits:
    """GitHub's documented secondary limits (its defaults); `status` is how it refuses."""

    writes_per_minute: int = 80
    writes_per_hour: int = 500
    points_per_minute: int = 900
    write_points: int = 5
    read_points: int = 1
    concurrent: int = 100
    status: int = 403  # GitHub answers 403 or 429

    def __post_init__(self) -> None:
        if self.status not in (403, 429):
            raise ValueError("GitHub refuses a secondary rate limit with 403 or 429")


@dataclass
class Budget:
    limit: int
    used: int
    reset: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
            "X-RateLimit-Used": str(self.used),
            "X-RateLimit-Resource": "core",
        }


@dataclass
class _Traffic:
    """One credential's recent requests, for the secondary limits."""

    writes: deque[float] = field(default_factory=deque)  # arrival times, the last hour
    points: deque[tuple[float, int]] = field(default_factory=deque)  # the last minute
    in_flight: int = 0


class RateLimits:
    """Budgets per credential (`key`), sized by the kind of caller. Callers hold the world lock."""

    def __init__(self) -> None:
        self.limits = dict(DEFAULT_LIMITS)
        self.secondary: SecondaryLimits | None = None
        self.time_factor = 1.0
        # (credential, limit) → refusals drawn: what a benchmark reports.
        self.refusals: Counter[tuple[str, str]] = Counter()
        self._budgets: dict[str, Budget] = {}
        self._traffic: dict[str, _Traffic] = {}

    @property
    def minute(self) -> float:
        return 60 / self.time_factor

    def budget(self, kind: str, key: str, now: float) -> Budget:
        limit = self.limits.get(kind, 5000)
        budget = self._budgets.get(key)
        if budget is None or now >= budget.reset:
            budget = Budget(limit, 0, math.ceil(now + WINDOW / self.time_factor))
            self._budgets[key] = budget
        budget.limit = limit
        return budget

    def charge(
        self,
        kind: str,
        key: str,
        now: float,
        *,
        refusal: str,
        method: str = "GET",
        request_id: str = "",
    ) -> Budget:
        """Count one request, or refuse it: with a secondary limit's 403/429 (when enforced),
        or with GitHub's 403 once the hour's budget is spent."""
        budget = self.budget(kind, key, now)
        if self.secondary is not None:
            self._secondary(key, now, method.upper() not in READS, request_id, budget)
        if budget.remaining == 0:
            self.refusals[key, "primary"] += 1
            raise ApiError(
                403, refusal, documentation_url=PRIMARY_RATE_LIMIT_DOCS, headers=budget.headers()
            )
        budget.used += 1
        return budget

    def _secondary(
        self, key: str, now: float, write: bool, request_id: str, budget: Budget
    ) -> None:
        limits = self.secondary
        assert limits is not None
        traffic = self._traffic.setdefault(key, _Traffic())
        minute, hour = self.minute, 60 * self.minute
        while traffic.writes and traffic.writes[0] + hour <= now:
            traffic.writes.popleft()
        while traffic.points and traffic.points[0][0] + minute <= now:
            traffic.points.popleft()
        cost = limits.write_points if write else limits.read_points
        waits: list[tuple[float, str]] = []
        points = sum(p for _, p in traffic.points)
        if points + cost > limits.points_per_minute:
            waits.append(
                (
                    _freed(traffic.points, points + cost - limits.points_per_minute, minute, now),
                    "points a minute",
                )
            )
        if write:
            last_minute = [t for t in traffic.writes if t + minute > now]
            if len(last_minute) >= limits.writes_per_minute:
                waits.append(
                    (
                        last_minute[len(last_minute) - limits.writes_per_minute] + minute - now,
                        "writes a minute",
                    )
                )
            if len(traffic.writes) >= limits.writes_per_hour:
                waits.append(
                    (
                        traffic.writes[len(traffic.writes) - limits.writes_per_hour] + hour - now,
                        "writes an hour",
                    )
                )
        if waits:
            wait, which = max(waits)
            self.refusals[key, which] += 1
            raise self._refused(wait, request_id, budget)
        if write:
            traffic.writes.append(now)
        traffic.points.append((now, cost))

    def _refused(self, wait: float, request_id: str, budget: Budget | None) -> ApiError:
        assert self.secondary is not None
        headers = {"Retry-After": str(max(1, math.ceil(wait)))}  # whole seconds, as GitHub
        if budget is not None:
            headers.update(budget.headers())
        return ApiError(
            self.secondary.status,
            SECONDARY_RATE_LIMIT.format(request_id=request_id),
            documentation_url=SECONDARY_RATE_LIMIT_DOCS,
            headers=headers,
        )

    def enter(self, key: str, request_id: str) -> None:
        """A request of `key` starts; refused beyond the concurrent limit (when enforced)."""
        if self.secondary is None:
            return
        traffic = self._traffic.setdefault(key, _Traffic())
        if traffic.in_flight >= self.secondary.concurrent:
            self.refusals[key, "concurrent requests"] += 1
            raise self._refused(self.minute, request_id, None)
        traffic.in_flight += 1

    def leave(self, key: str) -> None:
        traffic = self._traffic.get(key)
        if traffic is not None and traffic.in_flight > 0:
            traffic.in_flight -= 1


def _freed(points: deque[tuple[float, int]], excess: int, window: float, now: float) -> float:
    """Seconds until the oldest entries' points add up to `excess`, aged out."""
    for at, cost in points:
        excess -= cost
        if excess <= 0:
            return at + window - now
    return window
