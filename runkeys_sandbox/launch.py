"""Starting a server, one way for the demo, the benchmarks and the tests: a WSGI app in a thread
(`ThreadServer`), or a command such as `runkeys serve` (gunicorn) in a process group of its own
(`ServerProcess`), each on a free loopback port; `wait_until` polls with a deadline."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

T = TypeVar("T")
READY_WITHIN = 60.0  # seconds for gunicorn to start on a slow, busy machine
STOP_WITHIN = 15.0  # seconds for a quick shutdown before SIGKILL


class LaunchError(RuntimeError):
    """A server exited at start, or did not get ready in time; with the end of its log."""


def started(value: T | None, what: str, *, fix: str = "") -> T:
    """`value` once `what` is started; before, a RuntimeError saying it is not (and `fix`)."""
    if value is None:
        raise RuntimeError(f"{what} is not started" + (f": {fix}" if fix else ""))
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll `check` until it holds; `TimeoutError` naming `what` past the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


class _Quiet(WSGIRequestHandler):
    """No access log on stderr: callers read what they record instead."""

    server_version = "runkeys-sandbox"
    sys_version = ""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None

    def log(self, type: str, message: str, *args: Any) -> None:
        if type == "error":
            super().log(type, message, *args)


class ThreadServer:
    """A WSGI app served on `host` (a free port unless `port`), in a daemon thread, from now."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=_Quiet
        )
        where = f"[{host}]" if ":" in host else host
        self.url = f"http://{where}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"server-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self._server.host)

    @property
    def port(self) -> int:
        return int(self._server.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class ServerProcess:
    """`command` in its own session (a terminal's Ctrl-C reaches only its parent, which stops
    it), its output in `log`; ready once `ready_path` answers 200 on `port`."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        *,
        port: int,
        ready_path: str = "/readyz",
        cwd: Path | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.ready_path = ready_path
        with log.open("ab") as sink:
            self.process = subprocess.Popen(
                list(command),
                cwd=cwd,
                env=dict(env),
                stdout=sink,
                stderr=sink,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = READY_WITHIN) -> None:
        """Until the server answers; stopped when it exits, times out (`LaunchError`), or the
        wait is interrupted (Ctrl-C), so that nothing is left running."""
        try:
            self._poll_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _poll_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LaunchError(f"{self.name} exited at start:\n{self.tail()}")
            try:
                if requests.get(self.url + self.ready_path, timeout=3).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise LaunchError(f"{self.name} was not ready within {timeout:.0f} s:\n{self.tail()}")

    @property
    def name(self) -> str:
        args = self.process.args
        return " ".join(map(str, args[:4])) if isinstance(args, list) else str(args)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def worker_pids(self) -> list[int]:
        """The processes the server forked (gunicorn's workers): its children."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            if int(fields[1]) == self.process.pid:
                found.append(int(stat.parent.name))
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL to every process of the group: no cleanup of any kind."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, within: float = STOP_WITHIN) -> bool:
        """Ctrl-C, as a terminal sends it, to the whole group (gunicorn's quick shutdown);
        killed if it lingers past `within` seconds. False when it had to be killed."""
        if self.process.poll() is not None:
            return True
        try:
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(within)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self.kill()
            return False
        return True


def runkeys_serve(
    env: Mapping[str, str],
    log: Path,
    *,
    port: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
    metrics: bool = True,
    prefix: Sequence[str] = (),
    cwd: Path | None = None,
    wait: bool = True,
) -> ServerProcess:
    """`runkeys serve` as an operator starts it, with `env` as its whole environment, on `port`
    (a free one unless given). `metrics`: its Prometheus directory beside `log` (else it makes
    its own under TMPDIR); `prefix` goes before the command (`taskset -c 1`); `wait=False`
    leaves `wait_ready` to the caller, so several start side by side."""
    port = port or free_port()
    command = [*prefix, sys.executable, "-m", "runkeys.cli", "serve"]
    command += ["--bind", f"127.0.0.1:{port}"]
    if workers is not None:
        command += ["--workers", str(workers)]
    if threads is not None:
        command += ["--threads", str(threads)]
    env = dict(env)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if metrics:
        directory = log.parent / f"metrics-{port}"
        directory.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    served = ServerProcess(command, env, log, port=port, cwd=cwd)
    if wait:
        served.wait_ready()
    return served
