"""A job of a workflow run, as the runner runs a container action's steps: the entry point in a
subprocess with `INPUT_<NAME>`, the `GITHUB_*` variables and files and `ACTIONS_ID_TOKEN_REQUEST_*`;
`::add-mask::` honoured on every later line, the file commands read back as the runner reads them,
and `STATE_*` handed to the post step. For the demo and `runkeys sandbox --keys`; never prints a
value."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MASK = "::add-mask::"
FILES = ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY")
INTERRUPT_GRACE = 20.0  # seconds an interrupted step gets to roll its keys back


def unescape(data: str) -> str:
    """A workflow command's data as the runner reads it (actions/runner `ActionCommand.cs`)."""
    return data.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def parse_file_commands(text: str) -> dict[str, str]:
    """A GITHUB_ENV/GITHUB_OUTPUT/GITHUB_STATE file as the runner reads it: `name=value` or
    `name<<DELIM` … `DELIM`; later entries win."""
    found: dict[str, str] = {}
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        name, heredoc, delimiter = line.partition("<<")
        if heredoc and name and "=" not in name:
            end = lines.index(delimiter, index)  # ValueError: the runner fails the step too
            found[name] = "\n".join(lines[index:end])
            index = end + 1
        elif "=" in line:
            key, _, value = line.partition("=")
            found[key] = value
    return found


ANNOTATIONS = {"::error ": "Error", "::warning ": "Warning", "::notice ": "Notice"}


def render(line: str) -> list[str]:
    """A log line as the runner displays it: an annotation as `Error: message` (its lines)."""
    for prefix, kind in ANNOTATIONS.items():
        if line.startswith(prefix):
            message = unescape(line[len(prefix) :].partition("::")[2])
            first, *rest = message.splitlines() or [""]
            return [f"{kind}: {first}", *rest]
    return [line]


class Masker:
    """What the runner hides: every `::add-mask::` form, in every line shown after it."""

    def __init__(self) -> None:
        self.forms: set[str] = set()

    def add(self, form: str) -> None:
        if form.strip():
            self.forms.add(form)

    def hide(self, text: str) -> str:
        for form in sorted(self.forms, key=len, reverse=True):
            text = text.replace(form, "***")
        return text


@dataclass
class StepRun:
    """One step: its exit status, its log as shown (masked), and what its files say."""

    returncode: int
    log: list[str]  # stdout lines as the runner shows them; `::add-mask::` lines left out
    masks: int  # how many `::add-mask::` commands it sent
    stderr: str
    env: dict[str, str]  # GITHUB_ENV entries it wrote
    outputs: dict[str, str]
    state: dict[str, str]
    summary: str

    def annotations(self, kind: str) -> list[str]:
        """The messages of its `::error`/`::warning` annotations."""
        prefix = f"::{kind} "
        return [
            unescape(line.partition("::")[2].partition("::")[2])
            for line in self.log
            if line.startswith(prefix)
        ]

    def issued_keys(self) -> list[dict[str, Any]]:
        """The `keys-json` output (no values)."""
        listed: list[dict[str, Any]] = json.loads(self.outputs.get("keys-json", "[]"))
        return listed


def _entry_point(name: str) -> list[str]:
    """The action's console script beside this Python, or its module."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    found = shutil.which(name)
    if found:
        return [found]
    module = "action_src.post" if name.endswith("-post") else "action_src.main"
    return [sys.executable, "-m", module]


@dataclass
class Job:
    """One job's runner: its files live in `workdir`; `environ` is what every step gets."""

    workdir: Path
    environ: dict[str, str]
    masker: Masker = field(default_factory=Masker)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            path = self.workdir / name.lower()
            path.touch()
            self.environ[name] = str(path)

    def _read(self, name: str) -> str:
        return (self.workdir / name.lower()).read_text(encoding="utf-8")

    def run(
        self,
        inputs: Mapping[str, str],
        *,
        post_of: StepRun | None = None,
        on_line: Callable[[str], None] = lambda line: None,
    ) -> StepRun:
        """The main step, or (with `post_of`) the post step of that main step. `on_line` sees
        each log line as the runner would show it, masked."""
        env = dict(self.environ)
        env.update({f"INPUT_{name.replace(' ', '_').upper()}": v for name, v in inputs.items()})
        if post_of is not None:
            env.update({f"STATE_{name}": value for name, value in post_of.state.items()})
            env.update(post_of.env)  # the job's environment, with what GITHUB_ENV added
        before = {name: len(self._read(name)) for name in FILES}
        command = _entry_point("runkeys-action-post" if post_of else "runkeys-action")
        shown, masks, stderr, code = self._stream(command, env, on_line)
        written = {name: self._read(name)[before[name] :] for name in FILES}
        return StepRun(
            returncode=code,
            log=shown,
            masks=masks,
            stderr=self.masker.hide(stderr),
            env=parse_file_commands(written["GITHUB_ENV"]),
            outputs=parse_file_commands(written["GITHUB_OUTPUT"]),
            state=parse_file_commands(written["GITHUB_STATE"]),
            summary=self.masker.hide(written["GITHUB_STEP_SUMMARY"]),
        )

    def _stream(
        self, command: list[str], env: dict[str, str], on_line: Callable[[str], None]
    ) -> tuple[list[str], int, str, int]:
        errors = self.workdir / "step.stderr"
        with errors.open("w+b") as sink:
            process = subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=sink, text=True
            )
            shown: list[str] = []
            masks = 0
            try:
                assert process.stdout is not None
                for raw in process.stdout:
                    line = raw.rstrip("\n")
                    if line.startswith(MASK):
                        self.masker.add(unescape(line[len(MASK) :]))
                        masks += 1
                        continue
                    shown.append(self.masker.hide(line))
                    for rendered in render(shown[-1]):
                        on_line(rendered)
                code = process.wait()
            except KeyboardInterrupt:
                # Ctrl-C reached the step too (one process group): let it roll back.
                _let_it_roll_back(process, signal_it=False)
                raise
            except BaseException:
                _let_it_roll_back(process, signal_it=True)
                raise
            sink.seek(0)
            stderr = sink.read().decode("utf-8", "replace")
        errors.unlink()
        return shown, masks, stderr, code


def _let_it_roll_back(process: subprocess.Popen[str], *, signal_it: bool) -> None:
    """A step cut short is given time to roll its keys back before it is killed; `signal_it`:
    told to stop first (SIGTERM), as the runner tells a cancelled job's container."""
    if signal_it and process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(INTERRUPT_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def runner_environment(
    *,
    repository: str,
    repository_id: int,
    run_id: int,
    run_attempt: int,
    run_number: int,
    api_url: str,
    oidc: Mapping[str, str],
    event_path: Path | None = None,
    pull_request: int | None = None,
) -> dict[str, str]:
    """What the runner sets for a container action's step (and a few basics a shell has)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 (only a fallback)
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "GITHUB_REPOSITORY": repository,
        "GITHUB_REPOSITORY_ID": str(repository_id),
        "GITHUB_RUN_ID": str(run_id),
        "GITHUB_RUN_ATTEMPT": str(run_attempt),
        "GITHUB_RUN_NUMBER": str(run_number),
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_API_URL": api_url,
        **oidc,
    }
    if pull_request is not None and event_path is not None:
        event = {
            "action": "synchronize",
            "number": pull_request,
            "pull_request": {"number": pull_request},
        }
        event_path.write_text(json.dumps(event))
        env.update({"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event_path)})
    return env
