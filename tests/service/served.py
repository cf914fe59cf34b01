"""The service as it runs in production: `runkeys serve` (gunicorn, started by the one launcher,
`runkeys_sandbox.launch`) or `runkeys worker` in a subprocess, with its logs in a file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from runkeys_sandbox.launch import runkeys_serve, wait_until

STOP_WITHIN = 10  # seconds; it takes one or two, also on a busy machine


class Served:
    def __init__(
        self, environ: Mapping[str, str], log: Path, *, workers: int = 2, metrics: bool = True
    ) -> None:
        """`metrics=False`: `runkeys serve` makes its metrics directory itself, under TMPDIR."""
        env = {**os.environ, **environ, "TMPDIR": str(log.parent)}
        self.server = runkeys_serve(env, log, workers=workers, metrics=metrics)
        self.url, self.port, self.log = self.server.url, self.server.port, log
        self.process = self.server.process
        self.kill, self.worker_pids = self.server.kill, self.server.worker_pids

    def stop(self) -> None:
        """Ctrl-C to every process of the group. Stopping must be prompt; one that is not is
        killed, and the test fails."""
        if not self.server.stop(within=STOP_WITHIN):
            raise AssertionError(
                f"runkeys serve took more than {STOP_WITHIN} s to stop on Ctrl-C:\n"
                + self.server.tail()
            )


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


@contextmanager
def running_worker(environ: Mapping[str, str], log: Path, *args: str) -> Iterator[None]:
    """`worker_process` while the block runs; then Ctrl-C, and SIGKILL if it lingers."""
    process = worker_process(environ, log, *args)
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def wait_for(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    wait_until(check, timeout=timeout, what=what)
