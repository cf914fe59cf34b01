"""The service as it runs in production: `runkeys serve` (gunicorn) or `runkeys worker` in a
subprocess, on a free port, with its logs in a file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import requests

from tests.service.kit import free_port

STOP_WITHIN = 10  # seconds; it takes one or two, also on a busy machine


class Served:
    def __init__(
        self, environ: Mapping[str, str], log: Path, *, workers: int = 2, metrics: bool = True
    ) -> None:
        """`metrics=False`: `runkeys serve` makes its metrics directory itself, under TMPDIR."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, **environ, "TMPDIR": str(log.parent)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if metrics:
            directory = log.parent / f"metrics-{self.port}"  # in the test's directory: cleaned up
            directory.mkdir()
            env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
        command = [sys.executable, "-m", "runkeys.cli", "serve", "--bind", f"127.0.0.1:{self.port}"]
        command += ["--workers", str(workers)]
        with log.open("ab") as sink:
            self.process = subprocess.Popen(
                command, env=env, stdout=sink, stderr=sink, start_new_session=True
            )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"runkeys serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=3).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"runkeys serve did not get ready:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL to gunicorn's master and every worker: no cleanup of any kind."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def worker_pids(self) -> list[int]:
        """gunicorn's worker processes: the master's children."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            if int(fields[1]) == self.process.pid:
                found.append(int(stat.parent.name))
        return sorted(found)

    def stop(self) -> None:
        """Ctrl-C, as a terminal sends it: SIGINT to every process of the group. Stopping must be
        prompt; one that is not is killed, and the test fails."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(STOP_WITHIN)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"runkeys serve took more than {STOP_WITHIN} s to stop on Ctrl-C:\n"
                    + self.log.read_text()[-3000:]
                ) from None


def worker_process(environ: Mapping[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **environ}
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "runkeys.cli", "worker", *args],
            env=env,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )


def wait_for(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
