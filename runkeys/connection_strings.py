"""A connection string read as every client might read it: what in it is secret, and whether
the clients would agree on where its password ends (docs/providers.md, "Connections").

`secret_forms` also returns what a client misreading a raw `@`, `/`, `?` or `#` could print, and
`url_problem` says why a URL cannot be read one way only. Nothing here raises: the action masks
these forms before it has checked anything."""

from __future__ import annotations

import contextlib
import re
import urllib.parse

# Characters that end a password early in one client's reading or another.
_DELIMITERS = "@:/?#"
# A piece shorter than this is not masked on its own: `::add-mask::` of a 2-character string
# would blank those characters in every line of the job's log.
MIN_PIECE = 4
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})|%00")
# `password=` (or `sslpassword=`) in a key=value DSN or in a URL's query (libpq takes both).
_KEYWORD = re.compile(r"(?:^|(?<=[\s?&;]))(?:ssl)?password\s*=\s*", re.IGNORECASE)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

PERCENT_FIX = (
    "percent-encode special characters in the user name and password: @ as %40, % as %25, "
    "/ as %2F, ? as %3F, # as %23, a space as %20 (in Python: urllib.parse.quote(password, "
    "safe=''))"
)
PERCENT_DOCS = "docs/providers.md, 'Connections'"


def url_problem(text: str) -> str | None:
    """Why the URL `text` is not read the same way by every client, or None (also for a
    key=value DSN, which is not a URL). Never quotes any part of it."""
    if not _URL.match(text):
        return None
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
        return "it holds a space or a control character"
    try:
        parts = urllib.parse.urlsplit(text)
        _ = parts.port, parts.hostname
    except ValueError:
        return (
            "its host and port cannot be read: a '/', '?' or '#' in the password ends the host "
            "part early, or the port is not a number"
        )
    after_host = text.partition("://")[2][len(parts.netloc) :]
    checks = (
        ("@" in parts.netloc.rpartition("@")[0], "its user name or password holds a raw '@'"),
        (
            "@" in after_host,
            "it holds an '@' after the host part: a '/', '?' or '#' in the password ends the "
            "host part early, and an '@' anywhere else is written %40",
        ),
        (
            _BAD_PERCENT.search(text) is not None,
            "it holds a '%' that does not start a percent-escape (%XX), or %00",
        ),
    )
    return next((problem for failed, problem in checks if failed), None)


def secret_forms(text: str) -> tuple[str, ...]:
    """Every form of the credentials in the connection string `text` that a client, a log or an
    error could show: the password and the whole user part (`user:password`) as written and
    percent-decoded, a DSN's or query's `password=` value as written and unquoted, the pieces a
    misreading of a malformed URL can print (between its delimiters, at least `MIN_PIECE`
    characters), and, when it holds any credential, the whole string. Longest first."""
    found: set[str] = set()
    pieces: set[str] = set()
    if _URL.match(text):
        _url_forms(text, found, pieces)
    found.update(_keyword_forms(text))
    if found:
        found.add(text)
    forms = {f for f in found if f.strip()} | {p for p in pieces if len(p.strip()) >= MIN_PIECE}
    return tuple(sorted(forms, key=lambda f: (-len(f), f)))


def _url_forms(text: str, found: set[str], pieces: set[str]) -> None:
    rest = text.partition("://")[2]
    # The widest reading: everything up to the last `@` is the user part, as its writer meant
    # when the password holds a raw `@`, `/`, `?` or `#`.
    readings = [rest.rpartition("@")[0]] if "@" in rest else []
    with contextlib.suppress(ValueError):  # Python's, which differs when the query has an `@`
        readings.append(urllib.parse.urlsplit(text).netloc.rpartition("@")[0])
    malformed = url_problem(text) is not None
    for userinfo in readings:
        _user, colon, password = userinfo.partition(":")
        if not colon:
            continue  # a user name alone is not secret
        for raw in (userinfo, password):
            found.update((raw, urllib.parse.unquote(raw)))
        if malformed:
            pieces.update(_pieces(password) | _pieces(urllib.parse.unquote(password)))


def _pieces(password: str) -> set[str]:
    """What a client that cuts the password at one of `_DELIMITERS` may take for a port, a host
    or a database: each part before and after such a character."""
    found: set[str] = set()
    for index, char in enumerate(password):
        if char in _DELIMITERS:
            found.update((password[:index], password[index + 1 :]))
    return found


def _keyword_forms(text: str) -> set[str]:
    found: set[str] = set()
    for match in _KEYWORD.finditer(text):
        start = match.end()
        in_query = match.start() > 0 and text[match.start() - 1] in "?&"
        if in_query:
            raw = re.split(r"[&#]", text[start:], maxsplit=1)[0]
            found.update((raw, urllib.parse.unquote(raw), urllib.parse.unquote_plus(raw)))
        else:
            found.update(_dsn_value(text[start:]))
    return found


def _dsn_value(text: str) -> set[str]:
    """A libpq key=value DSN's value at the start of `text`: as written (quotes and backslash
    escapes kept), and as libpq reads it. An unterminated quote runs to the end."""
    quoted = text.startswith("'")
    index = 1 if quoted else 0
    value: list[str] = []
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            value.append(text[index + 1])
            index += 2
            continue
        if (quoted and char == "'") or (not quoted and char.isspace()):
            break
        value.append(char)
        index += 1
    written = text[: index + 1] if quoted else text[:index]
    return {written, written.strip("'"), "".join(value)}
