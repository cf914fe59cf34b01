"""Workflow commands and files: the only place runkeys talks to the runner
(https://docs.github.com/actions/reference/workflows-and-actions/workflow-commands).

Escaping follows actions/runner `ActionCommand.cs`; `GITHUB_ENV`, `GITHUB_OUTPUT` and
`GITHUB_STATE` entries are heredocs with a random delimiter (as actions/toolkit
`file-command.ts`), checked against the value so no value can end its own entry early."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from typing import TextIO

from runkeys.errors import ConfigError, RunkeysError, SpecError
from runkeys.filescan import MANIFESTS_VARIABLE
from runkeys.masking import encodings
from runkeys.scrub import REDACTED, short

TITLE = "runkeys"


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def heredoc(name: str, value: str) -> str:
    """One `name<<DELIM` entry of an environment, output or state file."""
    while True:
        delimiter = f"runkeys_{secrets.token_hex(16)}"
        if delimiter not in value and delimiter not in name:
            return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def describe(error: RunkeysError) -> str:
    """An error as a person should read it: each spec problem on its own line."""
    if isinstance(error, SpecError):
        lines = [f"The `keys` input has {len(error.problems)} problem(s):"]
        lines += [f"- {problem}" for problem in error.problems]
        lines += ["", "Nothing was minted."]
        return "\n".join(lines)
    return error.explain()


def unexpected(exc: Exception) -> RunkeysError:
    """A bug, as the step reports it: its type and a short message (values already scrubbed)."""
    return RunkeysError(
        f"runkeys failed unexpectedly: {short(f'{type(exc).__name__}: {exc}', 300)}",
        fix="re-run the job; if it fails again, report it with this message",
    )


class Workflow:
    """Commands on stdout and the job's files, as one step sees them."""

    def __init__(self, environ: Mapping[str, str], stdout: TextIO, *, title: str = TITLE) -> None:
        self.environ = environ
        self.stdout = stdout
        self.title = title
        self._delivered: dict[str, int] = {}  # file → its size before `deliver` wrote to it
        self._hidden: list[str] = []  # forms `hide` masked, kept out of what this step writes

    # -- commands ------------------------------------------------------------------------------

    def command(self, line: str) -> None:
        self.stdout.write(line + "\n")
        self.stdout.flush()  # a mask must reach the runner before anything that could leak

    def mask(self, form: str) -> None:
        if form.strip():
            self.command(f"::add-mask::{escape_data(form)}")

    def hide(self, values: Iterable[str]) -> None:
        """Mask every encoding of every value now, and replace them in every annotation,
        progress line and summary written later (a connection's password, which no code
        path should print, but which a driver's message might)."""
        forms = {form for value in values for form in encodings(value)}
        for form in sorted(forms, key=lambda f: (-len(f), f)):
            self.mask(form)
        self._keep_out(forms)

    def redact(self, values: Iterable[str]) -> None:
        """Replace every encoding of every value in what this step writes from now on, without
        masking it again (the step that minted it did)."""
        self._keep_out({form for value in values for form in encodings(value)})

    def _keep_out(self, forms: set[str]) -> None:
        # Short forms stay in the text, as `runkeys.scrub` leaves them: they would shred it.
        kept = {*self._hidden, *(form for form in forms if len(form) >= 4)}
        self._hidden = sorted(kept, key=lambda f: (-len(f), f))

    def _clean(self, text: str) -> str:
        for form in self._hidden:
            text = text.replace(form, REDACTED)
        return text

    def progress(self, message: str) -> None:
        # One line, and never one that starts with `::`: it cannot become a workflow command.
        line = " ".join(self._clean(message).split())
        self.command(f" {line}" if line.startswith("::") else line)

    def annotation(
        self, kind: str, title: str, message: str, *, file: str = "", line: int | None = None
    ) -> None:
        """`::error`, `::warning` or `::notice`: the file and line it is about, if any, a
        title, the message escaped."""
        props = [f"file={escape_property(self._clean(file))}"] if file else []
        props += [f"line={line}"] if file and line is not None else []
        props.append(f"title={escape_property(self._clean(title))}")
        message = escape_data(self._clean(message))
        self.command(f"::{kind} {','.join(props)}::{message}")

    def warning(self, message: str) -> None:
        self.annotation("warning", self.title, message)

    def die(self, error: RunkeysError) -> int:
        """The one exit path of a failed step: an `::error` annotation and the same text in the
        step summary. Returns the exit status."""
        text = describe(error)
        self.annotation("error", f"{self.title}: {error.title}", text)
        try:
            self.summary(f"## {self.title}: {error.title}\n\n{_markdown_text(text)}\n")
        except RunkeysError as exc:
            self.warning(exc.explain())
        return 1

    # -- files ---------------------------------------------------------------------------------

    def path(self, variable: str) -> str:
        path = self.environ.get(variable, "")
        if not path:
            raise ConfigError(
                variable,
                "is not set",
                fix="runkeys runs as a step of a GitHub Actions job, which sets it",
            )
        return path

    def append(self, variable: str, text: str) -> None:
        path = self.path(variable)
        try:
            with open(path, "a", encoding="utf-8") as file:
                file.write(text)
        except OSError as exc:
            raise ConfigError(
                variable,
                f"{path} could not be written ({exc.strerror or type(exc).__name__})",
                fix="runkeys must run as a step of a GitHub Actions job, on a working runner",
            ) from None

    def summary(self, markdown: str) -> None:
        if self.environ.get("GITHUB_STEP_SUMMARY"):
            self.append("GITHUB_STEP_SUMMARY", self._clean(markdown))

    def set_output(self, name: str, value: str) -> None:
        self.append("GITHUB_OUTPUT", heredoc(name, value))

    def save_state(self, name: str, value: str) -> None:
        self.append("GITHUB_STATE", heredoc(name, value))

    def deliver_files(self, variables: Mapping[str, str], outputs: Mapping[str, str]) -> None:
        """Variables into `GITHUB_ENV` and step outputs into `GITHUB_OUTPUT`; the sizes before
        are kept so that `withdraw` can cut the entries off again."""
        for variable, entries in (("GITHUB_ENV", variables), ("GITHUB_OUTPUT", outputs)):
            path = self.path(variable)
            self._delivered.setdefault(path, _size(path))
            self.append(variable, "".join(heredoc(n, v) for n, v in entries.items()))

    def leave_for_scan(self, manifest: str) -> None:
        """The scan sub-action's list of this step's keys (no values): a 0600 file under HOME,
        which every container action of the job shares (/github/home; RUNNER_TEMP is not
        mounted into container actions: https://github.com/actions/runner/issues/1984), its
        path appended to a job variable. A step that cannot leave it warns: the keys are out,
        only a scan would not see them."""
        home = self.environ.get("HOME", "")
        try:
            if not home:
                raise OSError("HOME is not set")
            folder = os.path.join(home, ".runkeys")
            os.makedirs(folder, mode=0o700, exist_ok=True)
            handle, path = tempfile.mkstemp(prefix="keys-", suffix=".json", dir=folder)
            with os.fdopen(handle, "w", encoding="utf-8") as file:  # mkstemp makes it 0600
                file.write(manifest)
        except OSError as exc:
            self.warning(f"The scan sub-action will not see these keys: {exc}")
            return
        earlier = self.environ.get(MANIFESTS_VARIABLE, "")
        listed = f"{earlier}\n{path}" if earlier else path
        self.append("GITHUB_ENV", heredoc(MANIFESTS_VARIABLE, listed))

    def withdraw(self) -> None:
        """Cut the delivered entries off (the runner reads the files only after the step)."""
        for path, size in self._delivered.items():
            if os.path.exists(path):
                os.truncate(path, size)
        self._delivered.clear()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _markdown_text(text: str) -> str:
    """Plain text in Markdown: lines kept apart, nothing taken for HTML."""
    return text.replace("<", "&lt;").replace(">", "&gt;")
