"""The environment-name rule over hostile names. Expected answers are written out here."""

from __future__ import annotations

import pytest

from runkeys.names import environment_name_problem

# name → the start of why it is refused (None: a name GitHub and runkeys both take)
ENVIRONMENT_NAMES = [
    ("ci-pr-12", None),
    ("a/b", None),  # GitHub takes `/` in a name; it is sent as %2F
    ("deploy/prod/service", None),
    ("staging deploy", None),
    ("préprod", None),
    ("100%", None),  # a percent sign is no escape
    ("x" * 255, None),
    (".", "an environment name cannot be `.` or `..`"),
    ("..", "an environment name cannot be `.` or `..`"),
    ("../..", "an environment name cannot be `.` or `..`"),
    ("a/../b", "an environment name cannot be `.` or `..`"),
    ("a/.", "an environment name cannot be `.` or `..`"),
    ("%2e%2e", "an environment name cannot contain a percent-escape"),
    ("%2F", "an environment name cannot contain a percent-escape"),
    ("a%2Fb", "an environment name cannot contain a percent-escape"),
    ("..%2F", "an environment name cannot contain a percent-escape"),
    ("\n", "an environment name cannot contain the control or invisible character U+000A"),
    ("ci\nprod", "an environment name cannot contain the control or invisible character U+000A"),
    ("ci\r", "an environment name cannot contain the control or invisible character U+000D"),
    ("\x7f", "an environment name cannot contain the control or invisible character U+007F"),
    ("\u0085", "an environment name cannot contain the control or invisible character U+0085"),
    ("ci\u202eorp", "an environment name cannot contain the control or invisible character U+202E"),
    ("a\u200bb", "an environment name cannot contain the control or invisible character U+200B"),
    ("a\u2028", "an environment name cannot contain the control or invisible character U+2028"),
    ("x" * 256, "an environment name may have at most 255 characters"),
    ("", "an environment name cannot be empty"),
    (" ", "an environment name cannot be blank"),
    (" ci", "an environment name cannot start or end with a space"),
    ("ci\u00a0", "an environment name cannot start or end with a space"),
    ("/ci", "an environment name cannot start or end with `/` or have `//`"),
    ("ci/", "an environment name cannot start or end with `/` or have `//`"),
    ("a//b", "an environment name cannot start or end with `/` or have `//`"),
]


@pytest.mark.parametrize(("name", "why"), ENVIRONMENT_NAMES)
def test_environment_names(name: str, why: str | None) -> None:
    problem = environment_name_problem(name)
    if why is None:
        assert problem is None
    else:
        assert problem is not None
        assert problem.startswith(why), problem
