"""Running `runkeys demo` and `runkeys sandbox --keys` as a user does, and checking what they
print and what they leave behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

from runkeys.providers.random_value import find_tokens

COMMAND = [sys.executable, "-m", "runkeys.cli"]
# `runkeys` as a terminal starts it, Ctrl-C raising KeyboardInterrupt: a shell's background job
# (`pytest &` in a script) starts its children with SIGINT ignored, and Python keeps it so.
INTERACTIVE_COMMAND = [
    sys.executable,
    "-c",
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('runkeys.cli', run_name='__main__', alter_sys=True)",
]
# What a minted value looks like in any encoding: a long run of letters of both cases and
# digits (tokens, passwords, base64). Nothing the commands print on purpose looks like that.
RANDOM_RUN = re.compile(r"[A-Za-z0-9_+%=-]{16,}")  # no "/": paths are not values
URL_PASSWORD = re.compile(r"\w+://[^\s/:@]+:[^\s/@]+@")
DEMO_ROLE = re.compile(r"^rk_[0-9a-f]{8}_database_url$")


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def environ(**more: str) -> dict[str, str]:
    """This environment without RUNKEYS_* settings, plus `more`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNKEYS_CONNECTION_")}
    return {**env, **more}


def run(*args: str, env: Mapping[str, str], stdin: str | None = None) -> Finished:
    started = time.monotonic()
    done = subprocess.run(
        [*COMMAND, *args],
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Finished(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def interrupt_after(
    *args: str, env: Mapping[str, str], marker: str, close: bool = False, timeout: float = 90
) -> Finished:
    """Start the command in its own process group and, once it has printed `marker`, press
    Ctrl-C (SIGINT to the group, as a terminal does) or, with `close`, stop reading its output
    (as `| head` does)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [*INTERACTIVE_COMMAND, *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line or time.monotonic() - started > timeout:
            break
    if close:
        process.stdout.close()
        process.wait(timeout)
        stderr = process.stderr.read() if process.stderr else ""
        return Finished(process.returncode, "".join(seen), stderr, time.monotonic() - started)
    os.killpg(process.pid, signal.SIGINT)
    rest, stderr = process.communicate(timeout=timeout)
    return Finished(process.returncode, "".join(seen) + rest, stderr, time.monotonic() - started)


def leaked(text: str) -> list[str]:
    """Anything in `text` that looks like a key value: a runkeys token (its checksum holds), a
    URL with a password, or a long random run of letters and digits."""
    found = find_tokens(text) + URL_PASSWORD.findall(text)
    for run_ in RANDOM_RUN.findall(text):
        if re.search(r"[a-z]", run_) and re.search(r"[A-Z]", run_) and re.search(r"\d", run_):
            found.append(run_)
    return found


def ports(text: str) -> list[int]:
    return [int(port) for port in re.findall(r"http://127\.0\.0\.1:(\d+)", text)]


def closed(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def processes_naming(text: str) -> list[int]:
    """Processes whose command line contains `text` (a port, a directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def demo_roles(admin_url: str) -> set[str]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'rk\\_%'").fetchall()
    return {str(name) for (name,) in rows if DEMO_ROLE.match(str(name))}


def assert_nothing_left(output: str, admin_url: str | None, roles_before: set[str]) -> None:
    """The command's directory, servers and processes are gone, and so are its roles."""
    for directory in re.findall(r"(/\S*runkeys-demo-\w+)", output):
        assert not Path(directory).exists(), directory
    found = ports(output)
    assert found, "the output names the servers it started"
    for port in found:
        assert closed(port), f"something still listens on {port}"
        assert processes_naming(f"127.0.0.1:{port}") == [], f"a process still serves {port}"
    if admin_url is not None:
        assert demo_roles(admin_url) <= roles_before, "a role the command minted is left"
