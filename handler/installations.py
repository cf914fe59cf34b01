"""Which installation of the App reaches a repository: asked of GitHub
(`GET /repos/{owner}/{repo}/installation`). An installation found is kept by the GitHub session
for the process's life; a repository GitHub says has none is remembered for a short while, so
that a flood of tokens from repositories without the App costs one GitHub call per repository
and period, not one per request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

from runkeys.errors import GitHubError
from runkeys.github.session import GitHubSession

MAX_REMEMBERED = 10_000  # repositories without the App kept at once; the oldest go first


class InstallationLookup:
    def __init__(
        self,
        github: Callable[[], GitHubSession],
        *,
        clock: Callable[[], datetime],
        miss_ttl: timedelta,
    ) -> None:
        self._github = github
        self._clock = clock
        self._miss_ttl = miss_ttl
        self._lock = threading.Lock()
        self._missing: OrderedDict[str, datetime] = OrderedDict()  # repository → until

    def __call__(self, repository: str) -> int | None:
        """The installation's id; None if GitHub says the App is not installed there. Other
        GitHub failures raise `GitHubError` (and are not remembered)."""
        key = repository.lower()
        now = self._clock()
        with self._lock:
            until = self._missing.get(key)
            if until is not None and now < until:
                return None
        try:
            return self._github().installation_id(repository)
        except GitHubError as exc:
            if exc.status != 404:
                raise
        with self._lock:
            self._missing.pop(key, None)
            self._missing[key] = now + self._miss_ttl  # in expiry order: one TTL for all
            while self._missing and (
                len(self._missing) > MAX_REMEMBERED or next(iter(self._missing.values())) <= now
            ):
                self._missing.popitem(last=False)
        return None
