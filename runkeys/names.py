"""GitHub's naming rules for what runkeys writes: secret names
(https://docs.github.com/actions/security-guides/using-secrets-in-github-actions, "Naming your
secrets") and environment names (https://docs.github.com/rest/deployments/environments).

runkeys is stricter where a name would be ambiguous in a URL path or a log line: README.md,
"Action inputs and outputs" lists what an environment name may not hold."""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Mapping

SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENVIRONMENT_NAME_MAX = 255

# The same name is exported into the job through GITHUB_ENV; these would break the job or are
# refused by the runner (NODE_OPTIONS), so they are not allowed as key names either.
_RESERVED_ENV = {"PATH", "HOME", "CI", "NODE_OPTIONS", "LD_PRELOAD", "LD_LIBRARY_PATH", "SHELL"}
_RESERVED_PREFIXES = ("GITHUB_", "RUNNER_", "ACTIONS_", "INPUT_", "STATE_", "RUNKEYS_")


def secret_name_problem(name: str) -> str | None:
    """Why `name` cannot be a secret (and job environment variable) name, or None if it can."""
    if not name:
        return "a secret name cannot be empty"
    if not SECRET_NAME.fullmatch(name):
        if name[0].isdigit():
            return "a secret name cannot start with a digit"
        return "a secret name may contain only letters, digits and underscores"
    upper = name.upper()
    for prefix in _RESERVED_PREFIXES:
        if upper.startswith(prefix):
            return f"names starting with {prefix} are reserved by GitHub Actions or runkeys"
    if upper in _RESERVED_ENV:
        return f"{name} is a variable the job itself needs"
    return None


# Unicode categories no name needs (controls, formatting marks, surrogates, private use,
# unassigned, line and paragraph separators): each can hide or rewrite what a log line shows.
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")

# Checked in order; the first that holds is the answer.
_ENVIRONMENT_RULES: tuple[tuple[Callable[[str], object], str], ...] = (
    (lambda name: not name, "an environment name cannot be empty"),
    (
        lambda name: len(name) > ENVIRONMENT_NAME_MAX,
        f"an environment name may have at most {ENVIRONMENT_NAME_MAX} characters",
    ),
    (lambda name: not name.strip(), "an environment name cannot be blank"),
    (lambda name: name != name.strip(), "an environment name cannot start or end with a space"),
    (
        _PERCENT_ESCAPE.search,
        "an environment name cannot contain a percent-escape such as %2F: write the character "
        "itself (runkeys encodes it)",
    ),
    (
        lambda name: any(part in (".", "..") for part in name.split("/")),
        "an environment name cannot be `.` or `..`, nor have one between slashes",
    ),
    (
        lambda name: "" in name.split("/"),
        "an environment name cannot start or end with `/` or have `//`",
    ),
)


def environment_name_problem(name: str) -> str | None:
    """Why `name` cannot be a deployment environment name, or None if it can."""
    invisible = next((c for c in name if unicodedata.category(c) in _INVISIBLE_CATEGORIES), None)
    if invisible is not None:
        return (
            "an environment name cannot contain the control or invisible character "
            f"U+{ord(invisible):04X}"
        )
    return next((why for broken, why in _ENVIRONMENT_RULES if broken(name)), None)


# The environment name's placeholders, filled from the run (the action) or the verified token
# (the service): nothing else may shape the name.
PLACEHOLDERS = ("pr", "run_id", "run_attempt", "run_number")


class PlaceholderError(ValueError):
    """An environment name template that cannot be filled: what is wrong, and the fix."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def placeholders_of(template: str) -> list[str]:
    """The placeholders `template` uses, in order. Raises `PlaceholderError` for a lone brace,
    a conversion or format spec (`{run_id!r}` would quote the value, `{pr:x>9}` pad it), or a
    name outside `PLACEHOLDERS` (`{pr[0]}`, `{pr.real}` included)."""
    try:
        parsed = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template)]
    except ValueError as exc:
        raise PlaceholderError(f"{template[:100]!r}: {exc}", "write `{{` for a brace") from None
    fields = [(f, spec, conv) for f, spec, conv in parsed if f is not None]
    if any(spec or conv for _, spec, conv in fields):
        raise PlaceholderError(
            "a placeholder takes no conversion or format", "write {run_id}, {pr}, … bare"
        )
    allowed = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
    for name, _, _ in fields:
        if name not in PLACEHOLDERS:
            raise PlaceholderError(f"unknown placeholder {{{name[:40]}}}", f"use {allowed}")
    return [name for name, _, _ in fields]


def fill_placeholders(template: str, values: Mapping[str, str]) -> str:
    """`template` with its placeholders (checked by `placeholders_of`) replaced by `values`."""
    placeholders_of(template)
    return template.format_map({name: values[name] for name in PLACEHOLDERS})
