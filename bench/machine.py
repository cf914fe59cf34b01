"""The machine a benchmark ran on, recorded beside every result: a ratio means little without
the CPU, the cores it could use, the memory, the OS, the Python and the databases — and how
busy the machine was (these benchmarks share it with other work)."""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))}, Linux {platform.release()}"
    except OSError:
        pass
    return platform.platform()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    if shutil.which("git") is None:
        return None
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    return done.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def postgres_version(url: str | None) -> str | None:
    """The server's version, or None when there is no server to ask."""
    if not url:
        return None
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error:
        return None
    return None if row is None else str(row[0]).split()[0]


_LOAD_AT_START = os.getloadavg()[0]  # when the benchmark's process started


def describe(*, postgres_url: str | None = None) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": _memory_gib(),
        "os": _os_name(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(postgres_url),
        # Other work on the machine: the 1-minute load average as the benchmark started and
        # as it ended (its own load included). Above the core count, expect noisy figures.
        "load_average_1m_at_start": round(_LOAD_AT_START, 2),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "packages": {
            name: _version(name)
            for name in ("gunicorn", "Flask", "SQLAlchemy", "psycopg", "PyGithub")
        },
        "commit": _git_commit(),
    }


def one_line(machine: dict[str, Any]) -> str:
    """The machine in one line, for a table's caption."""
    postgres = machine.get("postgresql") or "not measured"
    return (
        f"{machine['cpu']}, {machine['cores_usable']} of {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB, {machine['os']}, Python {machine['python']}, "
        f"SQLite {machine['sqlite']}, PostgreSQL {postgres}; {machine['date']}; "
        f"load average {machine['load_average_1m_at_start']} at start, "
        f"{machine.get('load_average_1m_at_end', '?')} at end; commit {machine['commit']}"
    )
