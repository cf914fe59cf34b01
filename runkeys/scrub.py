"""Remove known secret values from text before it reaches a log, an exception or a response.

Providers' errors pass through here (Vault's `dbplugin` error sanitizer is the model): a driver
that echoes a statement back would otherwise print the password it was given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from runkeys.errors import RunkeysError
from runkeys.masking import encodings

REDACTED = "***"
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")


def scrub(text: str, values: Iterable[str] = ()) -> str:
    """`text` with every value (and every encoding of it a log could show) replaced, and the
    password of any URL in it hidden."""
    forms = sorted({form for v in values if v for form in encodings(v)}, key=len, reverse=True)
    for form in forms:
        if len(form) >= 4:  # masking a 1-3 character fragment would shred the message
            text = text.replace(form, REDACTED)
    return _URL_PASSWORD.sub(rf"\g<scheme>\g<user>:{REDACTED}@", text)


def short(text: str, limit: int = 300) -> str:
    """One line, at most `limit` characters: for ledger rows and annotations."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def described(exc: BaseException, values: Iterable[str | None] = (), limit: int = 300) -> str:
    """An exception as one short line to log, store or warn with: a runkeys error as it explains
    itself, anything else as `Type: text`; every one of `values` (and URL passwords) scrubbed."""
    text = exc.explain() if isinstance(exc, RunkeysError) else f"{type(exc).__name__}: {exc}"
    return short(scrub(text, [value for value in values if value]), limit)
