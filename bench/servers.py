"""Servers the benchmarks start: `runkeys serve` (gunicorn, as deployed) and the bare Flask
baseline under the same gunicorn settings, each a subprocess on a free loopback port with its
log in a file; optionally pinned to some CPUs (`taskset`)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.bare import Writes
from runkeys_sandbox.launch import ServerProcess, free_port, runkeys_serve

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 1  # `runkeys serve` defaults on a SQLite ledger (handler/cli.py): 1 process of 4 threads
THREADS = 4


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


def serve_service(
    environ: Mapping[str, str],
    log: Path,
    *,
    workers: int = WORKERS,
    threads: int = THREADS,
    cpus: Sequence[int] | None = None,
    wait: bool = True,
) -> ServerProcess:
    """`runkeys serve`, exactly as an operator starts it."""
    env = {**os.environ, **environ}
    return runkeys_serve(
        env, log, workers=workers, threads=threads, prefix=pinned([], cpus), cwd=ROOT, wait=wait
    )


def serve_bare(
    log: Path,
    *,
    workers: int = WORKERS,
    threads: int = THREADS,
    cpus: Sequence[int] | None = None,
    wait: bool = True,
    writes: Writes | None = None,
) -> ServerProcess:
    """The baseline: `bench.bare` under the same gunicorn options as `runkeys serve` (with
    `writes`, the one making a delivery's ledger read and write)."""
    port = free_port()
    command = [sys.executable, "-m", "bench.bare", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", str(workers), "--threads", str(threads)]
    if writes is not None:
        command += ["--ledger", writes.ledger_url, "--repository-id", str(writes.repository_id)]
        command += ["--installation-id", str(writes.installation_id)]
    # `python -m bench.bare` finds the package from the checkout
    server = ServerProcess(pinned(command, cpus), os.environ, log, port=port, cwd=ROOT)
    if wait:
        server.wait_ready()
    return server
