"""Remove known secret values from text before it reaches a log, an exception or a response
(Vault's `dbplugin` error sanitizer is the model): a driver may echo back the password it got.

Linear time in what it reads; the one-line forms (`short`, `scrub_short`, `described`) read only
as much of a text of any size as their line shows."""

from __future__ import annotations

import re
from collections.abc import Iterable

from runkeys.errors import RunkeysError
from runkeys.masking import encodings

REDACTED = "***"
MIN_FORM = 4  # masking a 1-3 character fragment would shred the message
# How far a one-line scrub reads when redactions keep its line short: past it, "…".
READ_AT_MOST = 64 * 1024

# A URL's password: `scheme://user:password@`. Linear time: a scheme starts only where a run of
# scheme characters starts (the look-behind), and no quantifier gives back what it took (`*+`).
_SCHEME = r"(?<![a-zA-Z0-9+.-])(?P<scheme>[0-9+.-]*+[a-zA-Z][a-zA-Z0-9+.-]*+://)"
_USERINFO = r"(?P<user>[^:/@\s]*+):[^@/\s]*+"
_URL_PASSWORD = re.compile(_SCHEME + _USERINFO + "@")
# The same at the end of a text that was cut: a password cut before its `@` is still hidden.
_URL_PASSWORD_CUT = re.compile(_SCHEME + _USERINFO + r"(?P<end>@|\Z)")
_PIECE = re.compile(r"\S{1,1024}")  # a word, or a kilobyte of one


def scrub(text: str, values: Iterable[str] = ()) -> str:
    """`text` with every value (and every encoding of it a log could show) replaced, and the
    password of any URL in it hidden."""
    for form in _forms(values):
        text = text.replace(form, REDACTED)
    if "://" not in text:  # one pass in C; most messages have no URL
        return text
    return _URL_PASSWORD.sub(rf"\g<scheme>\g<user>:{REDACTED}@", text)


def short(text: str, limit: int = 300) -> str:
    """One line, at most `limit` characters: for ledger rows and annotations."""
    line, _ = _line_prefix(text, limit + 1)
    return _cut(line, limit)


def scrub_short(text: str, values: Iterable[str | None] = (), limit: int = 300) -> str:
    """`short(scrub(text, values), limit)`, reading only the start of `text` the line needs:
    when redactions shorten it, a little more, at most `READ_AT_MOST` characters."""
    forms = _forms(values)
    longest = max((len(form) for form in forms), default=0)
    want = limit + 1 + longest
    while True:
        line, whole = _line_prefix(text, want + 2 * longest)
        if whole:
            return _cut(_scrub_line(line, forms, _URL_PASSWORD, "@"), limit)
        line = _scrub_line(line[: _cut_between_forms(line, forms, want)], forms, _URL_PASSWORD_CUT)
        if len(line) > limit:
            return _cut(line, limit)
        if want >= READ_AT_MOST:
            return line[: limit - 1] + "…"
        want *= 2  # redactions shortened the line below the limit: read further


def described(exc: BaseException, values: Iterable[str | None] = (), limit: int = 300) -> str:
    """An exception as one short line to log, store or warn with: a runkeys error as it explains
    itself, anything else as `Type: text`; every one of `values` (and URL passwords) scrubbed."""
    text = exc.explain() if isinstance(exc, RunkeysError) else f"{type(exc).__name__}: {exc}"
    return scrub_short(text, values, limit)


def _forms(values: Iterable[str | None]) -> list[str]:
    """Every form of the values worth masking, longest first (a longer form contains shorter
    ones: replacing it first leaves nothing of it behind)."""
    forms = {form for v in values if v for form in encodings(v) if len(form) >= MIN_FORM}
    # Whitespace inside a form is collapsed in a one-line text: its collapsed form is masked too.
    forms |= {line for form in forms if len(line := " ".join(form.split())) >= MIN_FORM}
    return sorted(forms, key=len, reverse=True)


def _line_prefix(text: str, want: int) -> tuple[str, bool]:
    """The start of `" ".join(text.split())`, at least `want` characters of it (or all of it),
    and whether that is all of it. Reads `text` only as far as that start, in bounded pieces
    (a word of a megabyte costs no more than its first kilobyte)."""
    parts: list[str] = []
    size, end = 0, -1
    for match in _PIECE.finditer(text):
        if size >= want:
            return "".join(parts), False
        piece = match.group() if match.start() == end or not parts else " " + match.group()
        parts.append(piece)
        size, end = size + len(piece), match.end()
    return "".join(parts), True


def _cut_between_forms(line: str, forms: list[str], want: int) -> int:
    """A place at or before `want` in `line` where no form begins before it and ends after it:
    cut there, no value is cut short (one cut short would not be masked). `line` must go on
    for the longest form's length past `want`."""
    cut, moved = want, True
    while moved:
        moved = False
        for form in forms:
            # An occurrence across `cut` lies within [cut - len + 1, cut + len - 1).
            found = line.find(form, max(0, cut - len(form) + 1), cut + len(form) - 1)
            if found != -1:
                cut, moved = found, True
    return cut


def _scrub_line(line: str, forms: list[str], urls: re.Pattern[str], end: str = r"\g<end>") -> str:
    for form in forms:
        line = line.replace(form, REDACTED)
    return urls.sub(rf"\g<scheme>\g<user>:{REDACTED}{end}", line)


def _cut(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"
