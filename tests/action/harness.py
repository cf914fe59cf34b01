"""Run the action's entry points as GitHub runs them, and read what they left behind.

The real console script in a subprocess, with `INPUT_*` (hyphens kept), `GITHUB_*` and
`ACTIONS_ID_TOKEN_REQUEST_*`; the file commands are parsed as the runner parses them
(actions/runner `FileCommandManager`: `name=value` or `name<<DELIM` … `DELIM`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runkeys.filescan import MANIFESTS_VARIABLE
from tests.encoded_forms import encoded_forms

BIN = Path(sys.executable).parent
MAIN = str(BIN / "runkeys-action")
POST = str(BIN / "runkeys-action-post")
CHECK = str(BIN / "runkeys-check")  # the `check` sub-action's entry point
SCAN = str(BIN / "runkeys-scan")
MASK = "::add-mask::"


def unescape(data: str) -> str:
    return data.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def parse_file_commands(text: str) -> dict[str, str]:
    """A GITHUB_ENV/GITHUB_OUTPUT/GITHUB_STATE file as the runner reads it; later entries win.
    Raises ValueError where the runner would fail the step."""
    found: dict[str, str] = {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line:
            continue
        heredoc = line.find("<<")
        equals = line.find("=")
        if heredoc > 0 and (equals < 0 or heredoc < equals):
            name, delimiter = line[:heredoc], line[heredoc + 2 :]
            if not name or not delimiter:
                raise ValueError(f"invalid heredoc line {line!r}")
            body: list[str] = []
            while True:
                if index >= len(lines):
                    raise ValueError(f"Matching delimiter not found '{delimiter}'")
                current = lines[index]
                index += 1
                if current == delimiter:
                    break
                body.append(current)
            found[name] = "\n".join(body)
        elif equals > 0:
            found[line[:equals]] = line[equals + 1 :]
        else:
            raise ValueError(f"invalid file command line {line!r}")
    return found


@dataclass
class Run:
    """One step's run: exit status, stdout lines, stderr and the files it wrote."""

    returncode: int
    lines: list[str]
    stderr: str
    env: dict[str, str]
    outputs: dict[str, str]
    state: dict[str, str]
    summary: str
    files: dict[str, str] = field(default_factory=dict)  # raw text of each file
    # The scan sub-action's manifest list, which GITHUB_ENV also carries (kept out of `env`,
    # which holds the keys' variables): `job_env` puts it back.
    manifests: str | None = None

    def job_env(self) -> dict[str, str]:
        """What GITHUB_ENV added to the job's environment, as later steps get it."""
        extra = {} if self.manifests is None else {MANIFESTS_VARIABLE: self.manifests}
        return {**self.env, **extra}

    @property
    def masks(self) -> list[str]:
        return [unescape(line[len(MASK) :]) for line in self.lines if line.startswith(MASK)]

    def annotations(self, kind: str) -> list[tuple[str, str]]:
        """(title, message) of every `::kind title=…::message` line."""
        found = []
        prefix = f"::{kind} "
        for line in self.lines:
            if line.startswith(prefix):
                props, _, message = line[len(prefix) :].partition("::")
                title = ""
                for prop in props.split(","):
                    key, _, value = prop.partition("=")
                    if key == "title":
                        title = unescape(value).replace("%3A", ":").replace("%2C", ",")
                found.append((title, unescape(message)))
        return found

    def keys_json(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = json.loads(self.outputs["keys-json"])
        return data

    def logged(self) -> str:
        """The step's log as the runner keeps it: `::add-mask::` commands not shown, every
        masked string shown as `***`, stderr after stdout."""
        masks = sorted((m for m in self.masks if m), key=len, reverse=True)
        kept = []
        for line in [*self.lines, *self.stderr.splitlines()]:
            if line.startswith(MASK):
                continue
            shown = line
            for mask in masks:
                shown = shown.replace(mask, "***")
            kept.append(shown)
        return "\n".join(kept)

    def assert_masked_first(self, values: Mapping[str, str]) -> None:
        """Every form of every value (key name → value) is masked; no other stdout line
        carries any form; a key's masks come before the line that reports it minted."""
        forms = {form for value in values.values() for form in encoded_forms(value)}
        missing = forms - set(self.masks)
        assert not missing, f"{len(missing)} form(s) not masked"
        for number, line in enumerate(self.lines):
            if line.startswith(MASK):
                continue
            leaked = [f for f in forms if f in line or f in unescape(line)]
            assert not leaked, f"stdout line {number} carries a value: {line[:40]!r}…"
        for name, value in values.items():
            whole = MASK + value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
            minted = next(i for i, line in enumerate(self.lines) if line.startswith(f"{name}: "))
            assert self.lines.index(whole) < minted, f"{name} was masked after other output"

    def assert_nowhere(self, values: Iterable[str], *, except_job_files: bool = True) -> None:
        """No form of any value in stderr, the summary, the state, keys-json or annotations
        (GITHUB_ENV and GITHUB_OUTPUT hold the values themselves, by design)."""
        forms = [f for v in values for f in encoded_forms(v) if len(f) >= 8]
        places = {"stderr": self.stderr, "summary": self.summary}
        places["state"] = self.files.get("GITHUB_STATE", "")
        places["keys-json"] = self.outputs.get("keys-json", "")
        if not except_job_files:
            places["env"] = self.files.get("GITHUB_ENV", "")
            places["outputs"] = self.files.get("GITHUB_OUTPUT", "")
        for name, text in places.items():
            for form in forms:
                assert form not in text, f"a value appears in {name}"


class Step:
    """A job's step of the runkeys action: its file-command files live in `tmp`."""

    def __init__(self, tmp: Path, *, repository: str = "octo/app", run_id: int = 4242) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.repository = repository
        self.files = {
            name: tmp / name.lower()
            for name in ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY")
        }
        for path in self.files.values():
            path.touch()
        self.base_env: dict[str, str] = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            "HOME": str(tmp / "home"),  # /github/home in a container action
            "GITHUB_REPOSITORY": repository,
            "GITHUB_REPOSITORY_ID": "1296269",
            "GITHUB_RUN_ID": str(run_id),
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_RUN_NUMBER": "7",
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_API_URL": "http://127.0.0.1:9",  # nothing listens: a call would fail loudly
            "RUNKEYS_RETRY_BACKOFF": "0.01",
            "RUNKEYS_SECONDARY_RATE_WAIT": "1",
            "RUNKEYS_GITHUB_RETRIES": "2",
        }
        self.base_env.update({name: str(path) for name, path in self.files.items()})

    def pull_request_event(self, number: int) -> None:
        event = self.tmp / "event.json"
        event.write_text(
            json.dumps({"action": "opened", "number": number, "pull_request": {"number": number}})
        )
        self.base_env.update({"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event)})

    def run(
        self,
        inputs: Mapping[str, str],
        *,
        extra_env: Mapping[str, str] | None = None,
        post: bool = False,
        timeout: float = 60,
        wrap: Callable[[list[str], dict[str, str]], list[str]] | None = None,
        entry: str | None = None,
        cwd: Path | None = None,
    ) -> Run:
        """Run the main (or post) entry point, or `entry` (a sub-action's); `wrap` turns
        (argv, env) into another command line that runs it elsewhere (inside the action's
        image)."""
        env = dict(self.base_env)
        env.update({f"INPUT_{name.upper()}": value for name, value in inputs.items()})
        env.update(extra_env or {})
        before = {name: _read(path) for name, path in self.files.items()}
        argv = [entry or (POST if post else MAIN)]
        if wrap is not None:
            argv = wrap(argv, env)
        done = subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
        )
        after = {name: _read(path) for name, path in self.files.items()}
        written = {name: after[name][len(before[name]) :] for name in after}
        exported = parse_file_commands(written["GITHUB_ENV"])
        manifests = exported.pop(MANIFESTS_VARIABLE, None)
        return Run(
            returncode=done.returncode,
            lines=done.stdout.splitlines(),
            stderr=done.stderr,
            env=exported,
            outputs=parse_file_commands(written["GITHUB_OUTPUT"]),
            state=parse_file_commands(written["GITHUB_STATE"]),
            summary=written["GITHUB_STEP_SUMMARY"],
            files=written,
            manifests=manifests,
        )

    def post_env(self, main: Run) -> dict[str, str]:
        """What the runner gives the post step: STATE_* from the main step's state, and the
        job's environment with what GITHUB_ENV added."""
        env = {f"STATE_{name}": value for name, value in main.state.items()}
        env.update(main.job_env())
        return env


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
