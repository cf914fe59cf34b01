"""Finding keys in text by their fingerprints alone: the scanner never holds a value.

Each line is cut into the candidate strings a value or a secret part of a runkeys key can be
(`candidates`), in the forms masking does not cover as well as those it does: a run of the
characters hex, base64url, base62, `rk_` tokens and minted passwords are made of; a connection
URL whose user is a runkeys label, and its password; base64 and hex blobs decoded, and the line
URL-decoded and JSON-unescaped. Every candidate's SHA-256 (`runkeys.leases.fingerprint`) is
looked up among the fingerprints wanted. No I/O: the service's log scan and the action's own
scans both call `scan_lines`."""

from __future__ import annotations

import base64
import binascii
import re
import string
import urllib.parse
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from itertools import compress

from runkeys.leases import fingerprint

# Every value and part runkeys mints is at least this long (16 random bytes as base62 is 22
# characters; minted passwords are 32), and nothing it mints is longer than the cap.
MIN_LENGTH = 16
MAX_LENGTH = 4096
# A run of base64's characters (both alphabets). Cut at "+" and "/", it gives the runs of the
# characters hex, base64url, base62, `rk_` tokens and minted passwords are made of; whole, the
# blob a value's base64 or hex is. Found by turning every other ASCII character into a space
# and splitting (`str.translate` and `split` run in C: a regular expression is slower here).
_BASE64_CHARACTERS = frozenset(string.ascii_letters + string.digits + "+/_-")
_APART = str.maketrans({chr(c): " " for c in range(128) if chr(c) not in _BASE64_CHARACTERS})
_BLOB = re.compile(rf"[A-Za-z0-9+/_-]{{{MIN_LENGTH},}}")  # within a piece with non-ASCII in it
_LONG_ENOUGH = MIN_LENGTH.__le__
_CHUNK = 1 << 20  # characters of text split at once, so that the pieces of a large log are few
_NOT_RUN = re.compile(r"[+/]")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_MIN_BASE64 = MIN_LENGTH * 4 // 3  # an encoded value is a third longer than the value
# A connection URL with a runkeys account in it (`runkeys.labels`): the whole URL is a key's
# value; what stops it is what never appears unescaped in one.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://rk_[a-z0-9_]+:[^\s@/\"'<>]+@[^\s\"'<>`]+")
_URL_TAIL = ".,;:)]}!?"  # punctuation a sentence puts after a URL, not part of it
# What makes a line worth reading again URL-decoded or JSON-unescaped: two patterns, each
# starting with its one character (searched for fast), rather than one alternation.
_ESCAPES = (
    re.compile(r"%[0-9A-Fa-f]{2}"),
    re.compile(r"\\(?:u[0-9A-Fa-f]{4}|[\"\\/bfnrt])"),
)
_JSON_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|[\"\\/bfnrt])")
_JSON_SIMPLE = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


@dataclass(frozen=True)
class Hit:
    """A candidate whose fingerprint is wanted, and how it was written (never the value)."""

    fingerprint: str
    form: str  # "as is", "base64", "hex", "URL-encoded", "JSON-escaped", "in a URL"


@dataclass(frozen=True)
class Found:
    line: int  # 1-based
    hit: Hit


def _json_unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        escape = match.group(1)
        return chr(int(escape[1:], 16)) if escape[0] == "u" else _JSON_SIMPLE[escape]

    return _JSON_ESCAPE.sub(one, text)


def _urls(text: str, form: str) -> Iterator[tuple[str, str, str]]:
    """Connection URLs with a runkeys user, and their passwords."""
    for match in _URL.finditer(text):
        url = match.group(0)
        trimmed = url.rstrip(_URL_TAIL)
        for candidate in {url, trimmed}:
            yield url, candidate, "in a URL" if form == "as is" else form
        try:
            password = urllib.parse.urlsplit(trimmed).password
        except ValueError:
            continue
        if password:
            yield url, urllib.parse.unquote(password), "in a URL"


def _decoded_base64(blob: str) -> str | None:
    """The text a base64 or base64url blob encodes, or None when it is not one of text."""
    body = blob.rstrip("=")
    if len(body) % 4 == 1:
        return None
    urlsafe = "-" in body or "_" in body
    if urlsafe and ("+" in body or "/" in body):
        return None
    padded = body + "=" * (-len(body) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded)
        return raw.decode()
    except (binascii.Error, ValueError):
        return None


def _decoded(blob: str) -> Iterator[tuple[str, str]]:
    """What a blob decodes to, as text, and how: hex, or else base64 (either alphabet). Not a
    hex blob as base64: text in base64 uses letters past `f`."""
    if _HEX.fullmatch(blob):
        if len(blob) >= 2 * MIN_LENGTH and len(blob) % 2 == 0:
            try:
                yield bytes.fromhex(blob).decode(), "hex"
            except ValueError:
                return
        return
    if len(blob) >= _MIN_BASE64:
        text = _decoded_base64(blob)
        if text:
            yield text, "base64"


def _cut(text: str, form: str, *, decode: bool = True) -> Iterator[tuple[str, str, str]]:
    """The candidates in `text`: (the blob or URL of `text` it came from, the candidate, its
    form); with `decode`, in the blobs' decoded text too (one level deep). A blob repeated in
    the text is cut once: logs repeat themselves."""
    for blob in _blobs(text):
        runs = _NOT_RUN.split(blob) if "+" in blob or "/" in blob else [blob]
        for piece in runs:
            run = piece.rstrip("=")
            if MIN_LENGTH <= len(run) <= MAX_LENGTH:
                yield blob, run, form
        if decode:
            for decoded, how in _decoded(blob):
                for _, candidate, _form in _cut(decoded, how, decode=False):
                    yield blob, candidate, how
    if "://rk_" in text:
        yield from _urls(text, form)


def _blobs(text: str) -> Iterator[str]:
    """The runs of base64's characters in `text` at least MIN_LENGTH long, each once."""
    seen: set[str] = set()
    start = 0
    while start < len(text):
        end = text.find("\n", start + _CHUNK)
        end = len(text) if end < 0 else end
        pieces = set(text[start:end].translate(_APART).split()) - seen  # logs repeat themselves
        seen |= pieces
        unique = list(pieces)
        for piece in compress(unique, map(_LONG_ENOUGH, map(len, unique))):  # all in C
            if piece.isascii():
                yield piece
            else:  # a letter of another script, or a space of another kind, in the run
                yield from (blob for blob in _BLOB.findall(piece) if blob not in seen)
        start = end


def _escaped_lines(text: str) -> Iterator[str]:
    """The lines of `text` with a URL escape or a JSON escape in them, each once."""
    starts: set[int] = set()
    for pattern in _ESCAPES:
        after = -1  # the end of the line last taken: its other escapes need no look
        for match in pattern.finditer(text):
            if match.start() < after:
                continue
            starts.add(text.rfind("\n", 0, match.start()) + 1)
            after = text.find("\n", match.start())
            if after < 0:
                break
    for start in sorted(starts):
        end = text.find("\n", start)
        yield text[start : None if end < 0 else end]


def candidates(text: str) -> Iterator[tuple[str, str, str]]:
    """Every string in `text` that a key's value or secret part could be: (the part of `text`
    it is in, the candidate, the form it was written in). The patterns run over the whole text
    at once; only lines with escapes are read one by one, URL-decoded and JSON-unescaped."""
    yield from _cut(text, "as is")
    for line in dict.fromkeys(_escaped_lines(text)):  # a line repeated is read once
        if "%" in line:
            for _, candidate, form in _cut(urllib.parse.unquote(line), "URL-encoded"):
                yield line, candidate, form
        if "\\" in line:
            for _, candidate, form in _cut(_json_unescape(line), "JSON-escaped"):
                yield line, candidate, form


def _lines_of(text: str, part: str) -> Iterator[int]:
    """The numbers of the lines `part` of `text` is on (wherever it occurs)."""
    start = text.find(part)
    while start >= 0:
        yield text.count("\n", 0, start) + 1
        start = text.find(part, start + len(part))


def scan_text(text: str, wanted: Collection[str]) -> Iterator[Found]:
    """The wanted fingerprints in `text`, by line (numbered from 1), each once a line, in the
    order of the lines."""
    found: dict[tuple[int, str], Hit] = {}
    for part, candidate, form in candidates(text):
        digest = fingerprint(candidate)
        if digest in wanted:
            for line in _lines_of(text, part):
                found.setdefault((line, digest), Hit(digest, form))
    for (line, _digest), hit in sorted(found.items(), key=lambda item: item[0][0]):
        yield Found(line, hit)


def fingerprints_in(text: str) -> list[str]:
    """The fingerprints of `text` and of every candidate in it: what a value someone found (a
    secret scanning alert's: a connection string, a password alone) may be of a key's value
    or of a secret part, in whatever form it was found."""
    found = {fingerprint(text)}
    found.update(fingerprint(candidate) for _, candidate, _ in candidates(text))
    return sorted(found)


def scan_line(line: str, wanted: Collection[str]) -> list[Hit]:
    """The wanted fingerprints in one line, each once."""
    return [found.hit for found in scan_text(line, wanted)]


def scan_lines(lines: Iterable[str], wanted: Collection[str]) -> Iterator[Found]:
    """The wanted fingerprints in each line, numbered from 1."""
    return scan_text("\n".join(lines), wanted)
