"""The one way runkeys' own HTTP clients try again: urllib3's `Retry` on a dropped connection,
a 408, a 429 or a 5xx, with exponential backoff and jitter, `Retry-After` honoured up to a cap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from runkeys import versions

RETRY_STATUSES = frozenset({408, 429, *range(500, 600)})


class Backoff(Retry):
    """urllib3's `Retry`, waiting through `pause` (`time.sleep`; tests pass one that records)."""

    def __init__(self, *args: Any, pause: Callable[[float], None] = time.sleep, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.pause = pause

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.pause = self.pause
        return retry

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        """What `Retry.sleep` waits (`Retry-After` if the answer names one, else the backoff)."""
        seconds = None
        if self.respect_retry_after_header and response is not None:
            seconds = self.get_retry_after(response)
        if not seconds:
            seconds = self.get_backoff_time()
        if seconds > 0:
            self.pause(seconds)


def backoff(
    attempts: int,
    *,
    factor: float,
    cap: float,
    jitter: float | None = None,
    pause: Callable[[float], None] = time.sleep,
) -> Backoff:
    """`attempts` tries in all, every method (a caller that retries a POST makes it idempotent),
    the waits `factor`·2ⁿ plus up to `jitter` (default: `factor`) and at most `cap`, which
    bounds a `Retry-After` too. The last answer is returned, whatever its status."""
    return Backoff(
        total=max(0, attempts - 1),
        other=0,  # TLS and proxy failures: a certificate does not mend by waiting
        allowed_methods=None,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=factor,
        backoff_jitter=factor if jitter is None else jitter,
        backoff_max=cap,
        retry_after_max=int(cap),
        raise_on_status=False,
        pause=pause,
    )


def session(retry: Retry) -> requests.Session:
    """A `requests` session whose every request is tried again as `retry` says, and says
    which runkeys sends it."""
    http = requests.Session()
    http.headers["User-Agent"] = versions.USER_AGENT
    adapter = HTTPAdapter(max_retries=retry)
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


def attempts(response: requests.Response) -> int:
    """How many times the request was sent to get this answer."""
    retry = getattr(response.raw, "retries", None)
    return 1 + len(retry.history) if isinstance(retry, Retry) else 1
