"""Checks a job log of .github/workflows/self-test.yml: every line its print step wrote must show
the runner's mask `***` where the value was, in each form it printed. The checker never sees the
values (they lived only in the job that minted them); a value left unmasked makes its line
longer than what is allowed here, by at least the value's length (32 characters or more).

    python3 scripts/check_masked_log.py JOB.log NAME [NAME …]

Exit status 0 when every form of every NAME is there and masked; 1 naming each that is not.
Standard library only: it runs on a bare runner.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MARKER = "RUNKEYS-SELF-TEST"
# Form → what its line may show after the colon. A Basic auth header keeps the base64 of its
# `u:` prefix and the few characters that mix the prefix's bits or the padding's with the value's.
ALLOWED = {
    "raw": re.compile(r"\*\*\*"),
    "base64": re.compile(r"\*\*\*"),
    "base64url": re.compile(r"\*\*\*"),
    "url": re.compile(r"\*\*\*"),
    "json": re.compile(r"\*\*\*"),
    "basic": re.compile(r"Basic [A-Za-z0-9+/]{0,4}\*\*\*[A-Za-z0-9+/]{0,2}={0,2}"),
}
# A log line from the REST API: a timestamp, a space, then what the step wrote.
_LINE = re.compile(
    rf"^(?:\ufeff)?(?:\S+Z )?{MARKER} (?P<name>[A-Z0-9_]+) (?P<form>[a-z0-9]+): (?P<shown>.*)$"
)


def problems(log: str, names: list[str]) -> list[str]:
    """What is wrong with `log` for the keys `names`: a form not printed, or not masked."""
    seen: dict[tuple[str, str], list[str]] = {}
    for line in log.splitlines():
        match = _LINE.match(line.rstrip("\r"))
        if match:
            seen.setdefault((match["name"], match["form"]), []).append(match["shown"])
    found = []
    for name in names:
        for form, allowed in ALLOWED.items():
            shown = seen.get((name, form))
            if not shown:
                found.append(f"{name} {form}: not in the log (did the print step run?)")
            elif not all(allowed.fullmatch(text) for text in shown):
                found.append(f"{name} {form}: NOT MASKED")
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    log = Path(argv[0]).read_text(encoding="utf-8", errors="replace")
    found = problems(log, argv[1:])
    for problem in found:
        print(f"check_masked_log: {problem}", file=sys.stderr)
    if not found:
        print(f"check_masked_log: {len(argv) - 1} keys, {len(ALLOWED)} forms each, all masked")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
