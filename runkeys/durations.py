"""Durations as people write them in workflow files: `90s`, `30m`, `1h`, `1h30m`, `2d`."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)([smhd])")
_WHOLE = re.compile(r"^(?:\d+[smhd])+$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m` and the like. Raises ValueError with a message fit for a user."""
    compact = text.strip().lower()
    if not _WHOLE.fullmatch(compact):
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit (s, m, h, d), e.g. 30m or 1h30m"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(compact))
    if seconds <= 0:
        raise ValueError(f"{text!r} is zero; a duration must be longer than that")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest `1h30m`-style text for a whole number of seconds."""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
