"""The runkeys service an action step talks to: the real Flask app (`handler.app.create_app`) with
a SQLite ledger, trusting the sandbox's OIDC issuer and App, served on a loopback port; and the
faults a test puts in front of it, as a proxy would answer (a 5xx, a 429 with `Retry-After`,
an answer lost after the service acted, a port that refuses connections).

Tests read what the service did from its ledger, not from what was sent to it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask

from handler.app import create_app
from handler.ledger.leases import LeaseFilter, find
from handler.ledger.records import LeaseRecord
from runkeys_sandbox.launch import ThreadServer
from runkeys_sandbox.server.sandbox import Sandbox
from runkeys_sandbox.server.state import App
from tests.service.conftest import make_environ

AUDIENCE = "https://runkeys.test"


@dataclass
class Fault:
    path: str
    status: int
    times: int
    retry_after: str | None
    after: bool  # the service handles the request, then its answer is replaced
    version: str | None  # the runkeys version the answer says it comes from


@dataclass
class Faults:
    """WSGI middleware around the real app: the next requests to a path get an injected answer.
    Every request's path and the status its caller got are kept, in order."""

    app: Callable[..., Any]
    answered: list[tuple[str, int]] = field(default_factory=list)
    versions_said: list[str | None] = field(default_factory=list)  # each request's Runkeys-Version
    _pending: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(
        self,
        path: str,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        after: bool = False,
        version: str | None = None,
    ) -> None:
        with self._lock:
            self._pending.append(Fault(path, status, times, retry_after, after, version))

    def statuses(self, path: str) -> list[int]:
        return [status for seen, status in self.answered if seen == path]

    def _take(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._pending:
                if fault.path == path:
                    fault.times -= 1
                    if fault.times == 0:
                        self._pending.remove(fault)
                    return fault
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = str(environ.get("PATH_INFO", ""))
        with self._lock:
            self.versions_said.append(environ.get("HTTP_RUNKEYS_VERSION"))
        fault = self._take(path)
        if fault is not None and fault.after:
            # The service acts on the request; the caller never hears of it.
            answer = self.app(environ, lambda *args, **kwargs: lambda data: None)
            b"".join(answer)
            getattr(answer, "close", lambda: None)()
        if fault is not None:
            with self._lock:
                self.answered.append((path, fault.status))
            headers = [("Content-Type", "application/json")]
            if fault.retry_after is not None:
                headers.append(("Retry-After", fault.retry_after))
            if fault.version is not None:
                headers.append(("Runkeys-Version", fault.version))
            start_response(f"{fault.status} Injected", headers)
            return [json.dumps({"error": "injected", "message": "a proxy's answer"}).encode()]

        def record(status: str, headers: Any, *rest: Any) -> Any:
            with self._lock:
                self.answered.append((path, int(status.split(maxsplit=1)[0])))
            return start_response(status, headers, *rest)

        return self.app(environ, record)


class Service:
    """The real service for one test, with `Faults` in front of it."""

    def __init__(
        self,
        sandbox: Sandbox,
        app: App,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """`settings`: more of the service's own environment (broker mode's policy file and
        connections), never the step's."""
        directory.mkdir(parents=True, exist_ok=True)
        environ = make_environ(sandbox, app, f"sqlite:///{directory / 'ledger.sqlite3'}")
        environ["RUNKEYS_OIDC_AUDIENCE"] = AUDIENCE
        self.app: Flask = create_app(environ | dict(settings or {}))
        self.faults = Faults(self.app)
        self._server: ThreadServer | None = ThreadServer(self.faults, host=host)
        self.url = self._server.url

    def refuse_connections(self) -> None:
        """Close the port: every later request is refused at connect."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def stop(self) -> None:
        self.refuse_connections()
        self.app.extensions["runkeys"].close()

    def all_leases(self) -> list[LeaseRecord]:
        with self.app.extensions["runkeys"].ledger.begin() as conn:
            return find(conn, LeaseFilter(limit=1000))

    def leases(self) -> dict[str, LeaseRecord]:
        """The ledger's leases by key name (a test of one run has one lease per key)."""
        found = self.all_leases()
        by_name = {lease.key_name: lease for lease in found}
        assert len(by_name) == len(found), "two leases of one key name: use all_leases()"
        return by_name
