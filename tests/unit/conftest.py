"""The unit tier (`make test-unit`): no network, no services, no subprocesses, seconds in all.
A test here that connects, listens or starts a process fails, naming what it tried: it belongs
to the integration tier beside it (tests/<area>/)."""

from __future__ import annotations

import socket
import subprocess
from typing import Any

import pytest


def _refused(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a unit test may not {what}; move it out of tests/unit")

    return refuse


@pytest.fixture(autouse=True)
def _no_network_or_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    connect, bind = socket.socket.connect, socket.socket.bind

    def guarded(real: Any, what: str) -> Any:
        def call(self: socket.socket, address: Any) -> Any:
            if self.family == socket.AF_UNIX:
                return real(self, address)
            return _refused(f"{what} {address!r}")()

        return call

    monkeypatch.setattr(socket.socket, "connect", guarded(connect, "connect to"))
    monkeypatch.setattr(socket.socket, "bind", guarded(bind, "listen on"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refused("start a process"))
