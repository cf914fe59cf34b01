"""The primary rate limit: an hourly budget per credential, reported in `X-RateLimit-*` headers
on every answer and by `GET /rate_limit`, refused with 403 once spent
(https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api)."""

from __future__ import annotations

from dataclasses import dataclass

from runkeys_sandbox.server.errors import PRIMARY_RATE_LIMIT_DOCS, ApiError

WINDOW = 3600

# Requests per hour, by kind of caller (GitHub's documented defaults).
DEFAULT_LIMITS = {
    "installation": 5000,
    "app": 5000,
    "pat": 5000,
    "workflow": 1000,
    "anonymous": 60,
}


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


class RateLimits:
    """Budgets per credential (`key`), sized by the kind of caller. Callers hold the world lock."""

    def __init__(self) -> None:
        self.limits = dict(DEFAULT_LIMITS)
        self._budgets: dict[str, Budget] = {}

    def budget(self, kind: str, key: str, now: float) -> Budget:
        limit = self.limits.get(kind, 5000)
        budget = self._budgets.get(key)
        if budget is None or now >= budget.reset:
            budget = Budget(limit, 0, int(now) + WINDOW)
            self._budgets[key] = budget
        budget.limit = limit
        return budget

    def charge(self, kind: str, key: str, now: float, *, refusal: str) -> Budget:
        """Count one request, or refuse it with GitHub's 403 once the hour's budget is spent."""
        budget = self.budget(kind, key, now)
        if budget.remaining == 0:
            raise ApiError(
                403, refusal, documentation_url=PRIMARY_RATE_LIMIT_DOCS, headers=budget.headers()
            )
        budget.used += 1
        return budget
