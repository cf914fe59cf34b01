"""The environment-name rule over hostile names. Expected answers are written out here."""

from __future__ import annotations

import pytest

from runkeys.names import (
    PlaceholderError,
    environment_name_problem,
    fill_placeholders,
    placeholders_of,
)

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


VALUES = {"pr": "17", "run_id": "4242", "run_attempt": "2", "run_number": "7"}


@pytest.mark.parametrize(
    ("template", "filled"),
    [
        ("ci-pr-{pr}", "ci-pr-17"),
        ("ci-{run_id}-{run_attempt}-{run_number}", "ci-4242-2-7"),
        ("ci-{{run_id}}-{run_id}", "ci-{run_id}-4242"),  # a doubled brace is a brace
        ("plain", "plain"),
    ],
)
def test_placeholders_are_filled_with_the_values_only(template: str, filled: str) -> None:
    assert fill_placeholders(template, VALUES) == filled


FORMAT = ("a placeholder takes no conversion or format", "write {run_id}, {pr}, … bare")
UNKNOWN_FIX = "use {pr}, {run_id}, {run_attempt}, {run_number}"
BRACE_FIX = "write `{{` for a brace"


@pytest.mark.parametrize(
    ("template", "message", "fix"),
    [
        # What str.format would have made of these: ci-'4242', ci-xxxxxxxx4242, ci-4, ci-4242.
        ("ci-{run_id!r}", *FORMAT),
        ("ci-{run_id:x>12}", *FORMAT),
        ("ci-{run_id!s:}", *FORMAT),
        ("ci-{run_id[0]}", "unknown placeholder {run_id[0]}", UNKNOWN_FIX),
        ("ci-{run_id.real}", "unknown placeholder {run_id.real}", UNKNOWN_FIX),
        ("ci-{}", "unknown placeholder {}", UNKNOWN_FIX),
        ("ci-{0}", "unknown placeholder {0}", UNKNOWN_FIX),
        ("ci-{repository}", "unknown placeholder {repository}", UNKNOWN_FIX),
        ("ci-{run_id", "'ci-{run_id': expected '}' before end of string", BRACE_FIX),
        ("ci-}", "'ci-}': Single '}' encountered in format string", BRACE_FIX),
    ],
)
def test_a_placeholder_beyond_a_bare_name_is_refused(template: str, message: str, fix: str) -> None:
    with pytest.raises(PlaceholderError) as raised:
        placeholders_of(template)
    assert raised.value.message == message
    assert str(raised.value) == message
    assert raised.value.fix == fix
    with pytest.raises(PlaceholderError):
        fill_placeholders(template, VALUES)
