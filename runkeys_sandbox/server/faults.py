"""Faults a test injects per route: server errors, secondary rate limits (403 or 429 with
`Retry-After`), and slow answers — once, N times, or always."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any


@dataclass
class Fault:
    method: str  # an HTTP method, or "*" for any
    path: re.Pattern[str]  # searched in the path as sent (anchor it to match whole paths)
    status: int | None  # None: only delay, then answer normally
    retry_after: int | None
    delay: float
    remaining: int | None  # None: always
    body: Any = None

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and self.path.search(path) is not None


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        method: str,
        path_regex: str,
        *,
        status: int | None = 500,
        retry_after: int | None = None,
        delay: float = 0.0,
        times: int | None = 1,
        body: Any = None,
    ) -> Fault:
        """Answer matching requests with `status` (None: only `delay`), `times` times (None:
        always). 403 and 429 carry GitHub's secondary-rate-limit message."""
        if status is not None and not 400 <= status <= 599:
            raise ValueError(
                f"a fault's status must be 4xx or 5xx (or None for a delay), not {status}"
            )
        if retry_after is not None and (not isinstance(retry_after, int) or retry_after < 0):
            # urllib3 reads a non-integer Retry-After as an HTTP date; GitHub sends whole seconds.
            raise ValueError("retry_after is whole seconds (an int ≥ 0)")
        if times is not None and times < 1:
            raise ValueError("times must be ≥ 1, or None for always")
        try:
            json.dumps(body)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a fault's body must be JSON: {exc}") from None
        fault = Fault(
            method.upper(), re.compile(path_regex), status, retry_after, delay, times, body
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault for this request, counted as used."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    return fault
        return None
