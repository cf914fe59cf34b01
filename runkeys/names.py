"""GitHub's naming rules for what runkeys writes: secret names and environment names.

Secret names: https://docs.github.com/actions/security-guides/using-secrets-in-github-actions
("Naming your secrets"): only `[A-Za-z0-9_]`, not starting with a digit or `GITHUB_`,
case-insensitive, unique per scope. Environment names: at most 255 characters, case-insensitive.
"""

from __future__ import annotations

import re

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


def environment_name_problem(name: str) -> str | None:
    """Why `name` cannot be a deployment environment name, or None if it can."""
    if not name.strip():
        return "an environment name cannot be empty"
    if len(name) > ENVIRONMENT_NAME_MAX:
        return f"an environment name may have at most {ENVIRONMENT_NAME_MAX} characters"
    return None
