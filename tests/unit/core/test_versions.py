"""Which versions of the action and the service work together: the same major version, and
before 1.0 the same minor (SemVer §4: anything may change in 0.y.z)."""

from __future__ import annotations

import pytest

from runkeys.versions import mismatch, series


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.4.2", "1"),
        ("12.0.0", "12"),
        ("0.3.1", "0.3"),
        ("0.0.7", "0.0"),
        ("2.0.0-rc.1", "2"),
        ("1.0.0+build.5", "1"),
        (" 1.2.3 ", "1"),
        ("v1.2.3", None),
        ("1.2", None),
        ("01.2.3", None),
        ("1.2.3.4", None),
        ("", None),
        ("runkeys", None),
    ],
)
def test_series(version: str, expected: str | None) -> None:
    assert series(version) == expected


@pytest.mark.parametrize(
    ("theirs", "ours", "works"),
    [
        ("1.9.0", "1.0.0", True),
        ("1.0.1", "1.0.0", True),
        ("2.0.0", "1.9.9", False),
        ("0.1.9", "0.1.0", True),
        ("0.2.0", "0.1.0", False),  # before 1.0 a minor release may break the wire format
        ("1.0.0", "0.1.0", False),
        ("v1.0.0", "1.0.0", False),  # not SemVer: never taken for compatible
        ("", "1.0.0", False),
    ],
)
def test_mismatch(theirs: str, ours: str, works: bool) -> None:
    why = mismatch(theirs, ours=ours, they="the action", we="this service")
    assert (why is None) == works
    if not works:
        assert why is not None
        assert f"the action runs runkeys {theirs.strip() or '(empty)'}" in why
        assert f"this service runs runkeys {ours}" in why


def test_a_long_version_is_cut_in_the_message() -> None:
    why = mismatch("9" * 500, ours="1.0.0", they="the service", we="this action")
    assert why is not None
    assert "9" * 41 not in why
