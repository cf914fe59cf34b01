"""GitHub's numeric ids and numbers as the ledger holds them: ids in a signed 64-bit column, a
run's attempt and a pull request's number in a signed 32-bit one.

Whatever brings one in (a webhook, a token, a command) checks it here, so one out of range is
refused with the field named instead of overflowing in the database."""

from __future__ import annotations

import re
from typing import Any

MAX_ID = 2**63 - 1  # BIGINT
MAX_NUMBER = 2**31 - 1  # INTEGER: a run's attempt, a pull request's number
_DIGITS = re.compile(r"[0-9]{1,20}")  # ASCII only: `int()` also reads "٣" and fails on "²"


def in_range(value: Any, maximum: int = MAX_ID) -> int | None:
    """`value` if it is an integer (not a boolean) from 1 to `maximum`, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= maximum:
        return value
    return None


def parse(text: Any, maximum: int = MAX_ID) -> int | None:
    """The number `text` writes in ASCII digits (as GitHub's tokens write ids) or an integer
    as `in_range` takes it, from 1 to `maximum`; else None."""
    if isinstance(text, str):
        return in_range(int(text), maximum) if _DIGITS.fullmatch(text) else None
    return in_range(text, maximum)


def describe(maximum: int = MAX_ID) -> str:
    """What a valid value is, for messages."""
    return f"a whole number from 1 to {maximum}"
