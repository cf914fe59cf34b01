"""docs/service.md's "Try the service locally", run as written: its `keys.yml`, then each line
of its shell block typed into one bash, the background jobs left running as the doc says, and
only the waits a person does between lines added (for the env file, for `/readyz`). The leases
must end `revoked` by the deliveries `complete-run` and `close-pr` made the stand-in send.

The doc names port 8080; the shell runs in a network namespace of its own (`unshare -rn`)
where nothing else listens, so the test does not depend on what else runs on the machine."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[2] / "docs" / "service.md"
BIN = Path(sys.executable).parent
DONE = "__runkeys_doc_line_done__"
LINE_TIMEOUT = 120.0
SETTLE_TIMEOUT = 60.0
WAIT_READY = (
    "python -c 'import time, urllib.request\n"
    "for _ in range(1200):\n"
    "    try:\n"
    '        urllib.request.urlopen("http://127.0.0.1:8080/readyz", timeout=2); break\n'
    "    except OSError: time.sleep(0.1)'"
)


def section() -> str:
    return DOC.read_text().split("\n## Try the service locally\n", 1)[1].split("\n## ", 1)[0]


def shown_keys() -> str:
    block = re.search(r"```yaml\n(.*?)```", section(), re.S)
    assert block is not None
    return block.group(1)


def shown_commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", section(), re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_section_shows_the_whole_loop() -> None:
    lines = shown_commands()
    words = [shlex.split(line.rstrip("&")) for line in lines]
    assert words[0][:2] == ["runkeys", "sandbox"]
    assert "--webhook-url" in words[0]
    assert "--env-file" in words[0]
    assert lines[0].endswith("&")
    assert words[2][:2] == ["runkeys", "serve"]
    assert lines[2].endswith("&")
    assert ["runkeys", "sandbox", "complete-run"] in words
    assert ["runkeys", "sandbox", "close-pr", "1"] in words
    assert words[-2] == ["runkeys", "leases"]


def _namespace_prefix() -> list[str]:
    """`unshare -rn` with loopback up, where the machine allows it; else the machine's network
    (port 8080 must then be free)."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare and ip:
        probe = subprocess.run(
            [unshare, "-rn", ip, "link", "set", "lo", "up"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return [unshare, "-rn", "sh", "-c", f"{ip} link set lo up && exec bash"]
    return ["bash"]


class Shell:
    """One bash, fed a line at a time; its whole output kept in `transcript`."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            _namespace_prefix(),
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.transcript = ""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for chunk in iter(
            lambda: self.process.stdout.readline() if self.process.stdout else "", ""
        ):
            with self._lock:
                self.transcript += chunk

    def run(self, line: str) -> tuple[int, str]:
        """Type `line`; its exit status and what the shell printed meanwhile."""
        assert self.process.stdin is not None
        with self._lock:
            start = len(self.transcript)
        self.process.stdin.write(f"{line}\necho {DONE} $?\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + LINE_TIMEOUT
        while time.monotonic() < deadline:
            with self._lock:
                found = re.search(rf"{DONE} (\d+)\n", self.transcript[start:])
                if found:
                    output = self.transcript[start : start + found.start()]
                    return int(found.group(1)), output
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{line!r} did not finish:\n{self.transcript[-3000:]}")

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RUNKEYS_", "GITHUB_", "ACTIONS_", "PROMETHEUS_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    started = Shell(tmp_path, env)
    try:
        yield started
    finally:
        started.close()


def _exported(env_file: Path) -> dict[str, str]:
    found = {}
    for line in env_file.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        found[name] = shlex.split(value)[0] if value else ""
    return found


def _states(listing: str) -> dict[str, str]:
    """KEY → STATE from `runkeys leases`' table."""
    return {
        fields[3]: fields[1]
        for fields in (row.split() for row in listing.splitlines())
        if len(fields) > 3 and re.fullmatch(r"[0-9a-f]{32}", fields[0])
    }


def test_the_commands_run_as_written(shell: Shell, tmp_path: Path) -> None:
    (tmp_path / "keys.yml").write_text(shown_keys())
    lines = shown_commands()
    env_file = tmp_path / "sandbox.env"
    exported: dict[str, str] = {}
    outputs: list[str] = []
    for number, line in enumerate(lines):
        is_last_leases = line.strip() == "runkeys leases" and number == len(lines) - 2
        code, output = shell.run(line)
        assert code == 0, f"{line}: exit {code}\n{output}\n{shell.transcript[-3000:]}"
        if "--env-file" in line:  # a person waits for "Serving until Ctrl-C."
            code, _ = shell.run(
                f"for i in $(seq 600); do [ -s {env_file.name} ] && break; sleep 0.1; done"
            )
            assert env_file.exists(), shell.transcript
            assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
            exported = _exported(env_file)
        if line.startswith("runkeys serve"):  # the doc says: wait for /readyz
            code, _ = shell.run(WAIT_READY)
            assert code == 0, shell.transcript[-3000:]
        if is_last_leases:  # the worker polls each second: a person runs it again
            deadline = time.monotonic() + SETTLE_TIMEOUT
            while set(_states(output).values()) != {"revoked"} and time.monotonic() < deadline:
                time.sleep(0.5)
                code, output = shell.run(line)
        outputs.append(output)

    by_line = list(zip(lines, outputs, strict=True))
    listings = [out for line, out in by_line if line == "runkeys leases"]
    assert len(listings) == 2
    assert _states(listings[0]) == {"RUN_TOKEN": "active", "PR_TOKEN": "active"}, listings[0]
    assert _states(listings[1]) == {"RUN_TOKEN": "revoked", "PR_TOKEN": "revoked"}, listings[1]
    complete = next(out for line, out in by_line if "complete-run" in line)
    close = next(out for line, out in by_line if "close-pr" in line)
    assert "Delivered workflow_run completed to http://127.0.0.1:8080/webhook" in complete
    assert 'answered 200 {"outcome": "queued", "queued": 1}' in complete
    assert "Delivered pull_request closed to http://127.0.0.1:8080/webhook" in close
    assert 'answered 200 {"outcome": "queued", "queued": 1}' in close

    # What the service needs was exported, and the service used it.
    assert exported["RUNKEYS_OIDC_AUDIENCE"] == "http://127.0.0.1:8080"
    for name in ("RUNKEYS_APP_ID", "RUNKEYS_PRIVATE_KEY_FILE", "RUNKEYS_DATABASE_URL"):
        assert exported[name], name
    # The env file was asked for: secret values are in it and nowhere in the shell's output.
    secrets = [exported[k] for k in ("RUNKEYS_WEBHOOK_SECRET", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")]
    secrets.append(exported["GITHUB_TOKEN"])
    for value in secrets:
        assert len(value) >= 20
        assert value not in shell.transcript
    # `kill %2 %1` stopped both; the stand-in's directory (the App's key, the ledger) went.
    code, _ = shell.run("wait")
    assert code in (0, 130, 143)
    assert not Path(exported["RUNKEYS_PRIVATE_KEY_FILE"]).exists()
