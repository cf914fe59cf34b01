"""The request log tests assert on. Bodies are kept as they travelled: a sealed secret stays
sealed, and no decrypted value is ever recorded. Credentials are not recorded either, only
what kind of caller sent the request.

Listeners see every exchange as it completes: the test suite's OpenAPI check is one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # as sent, percent-encoding kept, without the query
    query: dict[str, str]
    status: int
    request_body: str | None  # the raw body as sent, or None if empty
    response_body: Any  # parsed JSON, or None if empty
    operation: str | None = None  # "PUT /repos/{owner}/{repo}/actions/secrets/{secret_name}"
    caller: str = "anonymous"  # anonymous | app | installation | workflow | pat
    injected: bool = False  # answered by an injected fault
    unexpected_error: str | None = None  # a sandbox bug: the traceback's last line
    response_headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The request body parsed as JSON (None if empty)."""
        return json.loads(self.request_body) if self.request_body else None


log = logging.getLogger("runkeys_sandbox.server")

Listener = Callable[[RecordedRequest], None]

_listeners: list[Listener] = []
_listeners_lock = threading.Lock()


def add_listener(listener: Listener) -> None:
    """Call `listener` with every exchange of every sandbox in this process."""
    with _listeners_lock:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    with _listeners_lock:
        if listener in _listeners:
            _listeners.remove(listener)


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[RecordedRequest] = []

    def append(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._entries.append(entry)
        with _listeners_lock:
            listeners = list(_listeners)
        for listener in listeners:
            try:
                listener(entry)
            except Exception:  # a listener's bug must not break the answer to the client
                log.exception("request-log listener %r failed", listener)

    def entries(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
