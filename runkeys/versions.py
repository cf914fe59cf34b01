"""The one version number the action, the service and the images report, and the rule by which
the action and the service accept each other: the same major version (SemVer; before 1.0 the
minor is the major: https://semver.org/#spec-item-4)."""

from __future__ import annotations

import re

from runkeys import __version__

HEADER = "Runkeys-Version"  # sent by the action, answered by the service on every /v1 route
USER_AGENT = f"runkeys/{__version__}"

_SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:[-+][0-9A-Za-z.+-]*)?")


def series(version: str) -> str | None:
    """`1` for 1.4.2, `0.3` for 0.3.1: what must match; None when `version` is not SemVer."""
    found = _SEMVER.fullmatch(version.strip())
    if found is None:
        return None
    major, minor, _ = found.groups()
    return major if major != "0" else f"0.{minor}"


def mismatch(theirs: str, *, ours: str = __version__, they: str, we: str) -> str | None:
    """Why `theirs` and `ours` cannot work together, naming who runs which, or None."""
    if series(theirs) is not None and series(theirs) == series(ours):
        return None
    shown = theirs.strip()[:40] or "(empty)"
    return (
        f"{they} runs runkeys {shown} and {we} runs runkeys {ours}: the action and the "
        f"service must share their major version ({series(ours)}.x)"
    )
