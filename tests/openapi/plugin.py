"""Every exchange of every sandbox in the suite is checked against GitHub's REST description
(`validator.py`); a test whose requests drew an unfaithful answer (or hit a sandbox bug) fails
at teardown, naming the exchange."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from runkeys_sandbox.server.recording import RecordedRequest, add_listener, remove_listener
from tests.openapi.validator import problems


class FaithfulnessCheck:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problems: list[str] = []
        self.checked = 0

    def __call__(self, rec: RecordedRequest) -> None:
        try:
            found = problems(rec)
        except Exception as exc:  # the check's own failure must fail the test, not hide
            found = [f"{rec.method} {rec.path}: the OpenAPI check failed: {exc!r}"]
        with self._lock:
            self.checked += 1
            self._problems.extend(found)

    def take(self) -> list[str]:
        with self._lock:
            found, self._problems = self._problems, []
            return found


@pytest.fixture(scope="session", autouse=True)
def openapi_check() -> Iterator[FaithfulnessCheck]:
    check = FaithfulnessCheck()
    add_listener(check)
    yield check
    remove_listener(check)


@pytest.fixture(autouse=True)
def _openapi_faithful(openapi_check: FaithfulnessCheck) -> Iterator[None]:
    openapi_check.take()
    yield
    found = openapi_check.take()
    if found:
        pytest.fail(
            "The sandbox answered unlike GitHub's REST description:\n  " + "\n  ".join(found),
            pytrace=False,
        )
