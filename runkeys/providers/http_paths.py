"""Where the `http` provider's requests may go, checked with no I/O.

A value filled into a path is one segment, percent-encoded whole, or refused if a server could
read it as another path; the URL finally sent must stay on the connection's host and below its
base path, segment by segment, as the client will send it (docs/providers.md#http)."""

from __future__ import annotations

import re
import urllib.parse

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_DECODINGS = 4  # a value still changing after this many percent-decodings is refused
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UnsafeRequest(ValueError):
    """A request that could reach something its template does not name. The text names the
    problem and the path (never a header value: it may hold the connection's credential)."""


def segment(name: str, value: str) -> str:
    """`value`, filled in for placeholder `{name}` in a path, as one percent-encoded segment."""
    problem = "is empty" if value == "" else _problem(value)
    if problem is not None:
        raise UnsafeRequest(f"{{{name}}} {_shown(value)} cannot be one path segment: it {problem}")
    return urllib.parse.quote(value, safe="")


def query_value(value: str) -> str:
    """`value` filled into the query: percent-encoded whole, so it stays one value."""
    return urllib.parse.quote(value, safe="")


def path_problem(path: str) -> str | None:
    """What is wrong with a template's path, below the connection's URL, or None."""
    if not path.startswith("/") or path.startswith("//"):
        return "must start with exactly one /"
    for part in path.split("/")[1:]:
        problem = _problem(part) if part else None
        if problem is not None:
            return f"has a segment {_shown(part)} that {problem}"
    return None


def check_target(url: str, base: str) -> None:
    """Raise `UnsafeRequest` unless `url` is on `base`'s scheme, host and port and strictly
    below its path, with nothing below it that a server could read as another path."""
    sent, home = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
    if (
        sent.scheme != home.scheme
        or sent.hostname != home.hostname
        or _port(sent) != _port(home)
        or "@" in sent.netloc
    ):
        raise UnsafeRequest(f"{_origin(sent)} is not the connection's {_origin(home)}")
    inside = home.path.rstrip("/").split("/")
    parts = sent.path.split("/")
    if len(parts) <= len(inside) or parts[: len(inside)] != inside:
        raise UnsafeRequest(
            f"{_shown(sent.path)} leaves the connection's base path {'/'.join(inside) or '/'}"
        )
    for part in parts[len(inside) :]:
        problem = _problem(part) if part else None
        if problem is not None:
            raise UnsafeRequest(f"{_shown(sent.path)} has a segment {_shown(part)} that {problem}")
    if sent.fragment:
        raise UnsafeRequest(f"{_shown(url)} has a fragment")


def _problem(part: str) -> str | None:
    """Why a non-empty path segment could name another path once a server decodes it."""
    plain = part
    for _ in range(MAX_DECODINGS):
        decoded = urllib.parse.unquote(plain)
        if decoded == plain:
            break
        plain = decoded
    else:
        return "is percent-encoded too many times"
    decoded = " once percent-decoded" if plain != part else ""
    if plain in (".", ".."):
        return "is a dot segment" + decoded
    if "/" in plain or "\\" in plain:
        return "holds a slash or a backslash" + decoded
    if _CONTROL.search(plain):
        return "holds a control character" + decoded
    return None


def _port(parts: urllib.parse.SplitResult) -> int | None:
    try:
        return parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None


def _origin(parts: urllib.parse.SplitResult) -> str:
    return _shown(f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}")


def _shown(text: str) -> str:
    """Quoted with escapes, so a control character or a terminal escape shows as text."""
    return repr(text[:100] + ("…" if len(text) > 100 else ""))
