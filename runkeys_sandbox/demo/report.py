"""How the demo talks: numbered chapters of plain sentences, the step's log indented as a runner
shows it, and a summary table. Every line goes through the job's masker first, so a value that
reached the job can never be printed, even by mistake."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from runkeys.errors import RunkeysError
from runkeys_sandbox.demo.runner import Masker

WIDTH = 96


@dataclass
class Row:
    """One key's line in the summary."""

    key: str
    provider: str
    lifetime: str
    minted: bool = False
    retired_by: str = "-"
    secret_gone: bool | None = None
    works_before: bool | None = None  # None: nothing to log in to
    works_after: bool | None = None

    def cells(self) -> list[str]:
        if self.works_before is None:
            works = "n/a (no login)"
        else:
            works = f"{_yes(self.works_before)}, then {_yes(bool(self.works_after))}"
        secret = "-" if self.secret_gone is None else _yes(self.secret_gone)
        return [
            self.key,
            self.provider,
            self.lifetime,
            _yes(self.minted),
            self.retired_by,
            secret,
            works,
        ]


HEADER = ["KEY", "PROVIDER", "LIFETIME", "MINTED", "RETIRED BY", "SECRET GONE", "CREDENTIAL WORKS?"]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def summary_table(rows: Sequence[Row]) -> list[str]:
    table = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]


class OutputClosedError(RunkeysError):
    title = "Output closed"


def _silence(out: TextIO) -> None:
    """Point a closed stdout at /dev/null, so the interpreter's last flush does not fail too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (a test's StringIO): nothing to flush
        pass


class Narrator:
    def __init__(self, out: TextIO, masker: Masker | None = None) -> None:
        self.out = out
        self.masker = masker or Masker()
        self.chapter = 0
        self.closed = False

    def _print(self, text: str) -> None:
        if self.closed:
            return
        try:
            print(self.masker.hide(text), file=self.out, flush=True)
        except BrokenPipeError:  # `runkeys demo | head`: stop, but clean up all the same
            self.closed = True
            _silence(self.out)
            raise OutputClosedError("the output was closed; stopping") from None

    def title(self, text: str) -> None:
        self._print(text)
        self._print("=" * len(text))

    def heading(self, text: str) -> None:
        self.chapter += 1
        self._print("")
        self._wrapped(text, f"{self.chapter}. ", "   ")

    def line(self, text: str) -> None:
        self._wrapped(text, "   ", "   ")

    def _wrapped(self, text: str, first: str, rest: str) -> None:
        lines = textwrap.wrap(
            text,
            WIDTH,
            initial_indent=first,
            subsequent_indent=rest,
            break_long_words=False,  # URLs, paths and names stay whole
            break_on_hyphens=False,
        )
        for line in lines:
            self._print(line)

    def block(self, lines: Sequence[str]) -> None:
        for line in lines:
            self._print(f"       {line}")

    def log(self, line: str) -> None:
        """A line of the step's log (already masked by the runner's rules)."""
        self._print(f"     | {line}")

    def table(self, lines: Sequence[str]) -> None:
        for line in lines:
            self._print(f"   {line}")
