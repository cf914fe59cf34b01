"""Scanning everything a run produced for key values, in every encoding (the tests' own list,
`tests.encoded_forms`). A value may appear in exactly two places: an `::add-mask::`
line of the action's stdout, and the `GITHUB_ENV`/`GITHUB_OUTPUT` heredoc entries that carry
it to the job (by design: that is how the job gets it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tests.encoded_forms import encoded_forms

MASK = "::add-mask::"


@dataclass(frozen=True)
class Secret:
    """A value that must not leak, and the job variables allowed to carry it (name → the exact
    text of that variable: the value itself, or a larger value that contains it)."""

    label: str
    value: str = field(repr=False)
    carriers: Mapping[str, str] = field(default_factory=dict, repr=False)


class Scanner:
    def __init__(self, secrets: Iterable[Secret]) -> None:
        self.secrets = list(secrets)
        self.forms: dict[str, str] = {}
        for secret in self.secrets:
            for form in sorted(encoded_forms(secret.value)):
                self.forms.setdefault(form, secret.label)
        self.places = 0  # how many places were scanned, so a test can show it scanned something

    def found(self, text: str) -> list[str]:
        return sorted({label for form, label in self.forms.items() if form in text})

    def text(self, where: str, text: str, *, masks_allowed: bool = False) -> list[str]:
        """Problems in `text`; with `masks_allowed`, `::add-mask::` lines may carry values."""
        self.places += 1
        problems = []
        for number, line in enumerate(text.splitlines(), 1):
            if masks_allowed and line.startswith(MASK):
                continue
            for label in self.found(line):
                problems.append(f"{where}, line {number}: {label}")
        return problems

    def data(self, where: str, data: bytes) -> list[str]:
        """Problems in raw bytes (a database file): every form is ASCII or UTF-8."""
        self.places += 1
        return [f"{where}: {label}" for form, label in self.forms.items() if form.encode() in data]

    def job_file(self, where: str, text: str) -> list[str]:
        """`GITHUB_ENV`/`GITHUB_OUTPUT`: values only inside the heredoc bodies of the variables
        that carry them, each body exactly that variable's value; nothing anywhere else."""
        self.places += 1
        allowed: dict[str, set[str]] = {}
        for secret in self.secrets:
            for name, carried in secret.carriers.items():
                allowed.setdefault(name, set()).add(carried)
        problems: list[str] = []
        lines = text.split("\n")
        index = 0
        while index < len(lines):
            line = lines[index]
            name, heredoc, delimiter = line.partition("<<")
            problems += [f"{where}: {label} in the line {name!r}" for label in self.found(line)]
            index += 1
            if not heredoc:
                continue
            end = lines.index(delimiter, index)
            body = "\n".join(lines[index:end])
            index = end + 1
            labels = self.found(body)
            if labels and body not in allowed.get(name, set()):
                problems.append(f"{where}: {', '.join(labels)} in the entry {name!r}")
        return problems
