"""GitHub's naming rules for what runkeys writes: secret names
(https://docs.github.com/actions/security-guides/using-secrets-in-github-actions, "Naming your
secrets") and environment names (https://docs.github.com/rest/deployments/environments).

runkeys is stricter where a name would be ambiguous in a URL path or a log line: README.md,
"Action inputs and outputs" lists what an environment name may not hold."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

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
