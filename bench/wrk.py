"""Driving `wrk` (a real HTTP load generator, C, keep-alive connections) with the webhook
script, and reading the JSON line the script prints at the end."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.servers import pinned

SCRIPT = Path(__file__).resolve().parent / "webhook.lua"
INSTALL = (
    "the webhook benchmark needs `wrk`, an HTTP load generator: on Debian or Ubuntu "
    "`apt-get install -y wrk` (as root), on macOS `brew install wrk`; or build it from "
    "https://github.com/wg/wrk"
)


class WrkMissingError(RuntimeError):
    pass


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkMissingError(INSTALL)
    return found


def wrk_version() -> str:
    done = subprocess.run([wrk_binary(), "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].split(" [")[0] if done else "?"


@dataclass(frozen=True)
class Load:
    """One wrk run's figures."""

    requests: int
    seconds: float
    errors: int  # connect, read, write, timeouts and non-2xx answers together
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @classmethod
    def parse(cls, output: str) -> Load:
        line = next(x for x in reversed(output.splitlines()) if x.startswith("{"))
        data: dict[str, Any] = json.loads(line)
        latency = data["latency_us"]
        return cls(
            requests=int(data["requests"]),
            seconds=data["duration_us"] / 1e6,
            errors=sum(int(v) for v in data["errors"].values()),
            p50_ms=latency["p50"] / 1000,
            p90_ms=latency["p90"] / 1000,
            p99_ms=latency["p99"] / 1000,
            max_ms=latency["max"] / 1000,
        )


def run_wrk(
    url: str,
    *,
    template: Path,
    runs: Path,
    prefix: str,
    seconds: float,
    connections: int,
    threads: int = 1,
    cpus: Sequence[int] | None = None,
) -> Load:
    """`connections` keep-alive connections for `seconds`, as fast as the server answers
    (a closed loop: each connection sends its next request when the answer came)."""
    command = [
        wrk_binary(),
        f"--threads={threads}",
        f"--connections={max(connections, threads)}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",  # GitHub gives up on a delivery after 10 s
        f"--script={SCRIPT}",
        f"{url}/webhook",
        "--",
        str(template),
        str(runs),
        prefix,
        "/webhook",
        str(threads),
    ]
    done = subprocess.run(
        pinned(command, cpus), capture_output=True, text=True, check=False, timeout=seconds + 60
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    return Load.parse(done.stdout)
