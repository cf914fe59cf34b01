"""Servers the benchmarks start: `runkeys serve` (gunicorn, as deployed) and the bare Flask
baseline under the same gunicorn settings, each a subprocess on a free loopback port with its
log in a file; optionally pinned to some CPUs (`taskset`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.bare import Writes

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 1  # `runkeys serve` defaults on a SQLite ledger (handler/cli.py): 1 process of 4 threads
THREADS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def private_key_pem() -> str:
    """An App key for a service that must start but will not call GitHub."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def pinned(command: list[str], cpus: Sequence[int] | None) -> list[str]:
    if not cpus:
        return command
    if shutil.which("taskset") is None:
        raise RuntimeError("pinning needs `taskset` (util-linux): apt-get install -y util-linux")
    return ["taskset", "-c", ",".join(map(str, cpus)), *command]


class Server:
    """A gunicorn-served app in its own process group; `url` once ready."""

    def __init__(
        self,
        command: list[str],
        environ: Mapping[str, str],
        log: Path,
        *,
        port: int,
        ready_path: str = "/readyz",
        wait: bool = True,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("ab") as sink:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,  # `python -m bench.bare` finds the package from the checkout
                env={**os.environ, **environ},
                stdout=sink,
                stderr=sink,
                start_new_session=True,
            )
        self.ready_path = ready_path
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the app answers (servers started with `wait=False` start side by side)."""
        path = self.ready_path
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}{path}", timeout=3).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not get ready:\n{self.log.read_text()[-3000:]}")

    def worker_pids(self) -> list[int]:
        """gunicorn's worker processes (the master's children)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        """gunicorn's quick shutdown (SIGINT), then SIGKILL if it lingers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def serve_service(
    environ: Mapping[str, str],
    log: Path,
    *,
    workers: int = WORKERS,
    threads: int = THREADS,
    cpus: Sequence[int] | None = None,
    wait: bool = True,
) -> Server:
    """`runkeys serve`, exactly as an operator starts it."""
    port = free_port()
    command = [sys.executable, "-m", "runkeys.cli", "serve", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", str(workers), "--threads", str(threads)]
    metrics = log.parent / f"metrics-{port}"
    metrics.mkdir()
    env = {**environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    return Server(pinned(command, cpus), env, log, port=port, wait=wait)


def serve_bare(
    log: Path,
    *,
    workers: int = WORKERS,
    threads: int = THREADS,
    cpus: Sequence[int] | None = None,
    wait: bool = True,
    writes: Writes | None = None,
) -> Server:
    """The baseline: `bench.bare` under the same gunicorn options as `runkeys serve` (with
    `writes`, the one making a delivery's ledger read and write)."""
    port = free_port()
    command = [sys.executable, "-m", "bench.bare", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", str(workers), "--threads", str(threads)]
    if writes is not None:
        command += ["--ledger", writes.ledger_url, "--repository-id", str(writes.repository_id)]
        command += ["--installation-id", str(writes.installation_id)]
    return Server(pinned(command, cpus), {}, log, port=port, wait=wait)
