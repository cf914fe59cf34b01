"""The paths runkeys sends to GitHub, built one segment at a time.

Every name goes into a path through `quote_path`, one percent-encoded segment (`/` as `%2F`, as
https://docs.github.com/rest/deployments/environments asks); an empty or dot segment, as given or
decoded, is refused: HTTP clients and servers resolve `..` against the path around it."""

from __future__ import annotations

import re
import urllib.parse

from runkeys.errors import RunkeysError

# `%2525…` is decoded one level at a time; no name runkeys sends is encoded this deep.
_MAX_DECODES = 4
_SEPARATORS = re.compile(r"[/\\]")


class UnsafePathSegment(RunkeysError):
    """A name would change the path it is put in; nothing was sent."""

    title = "Unsafe name in a GitHub path"

    def __init__(self, what: str, segment: str) -> None:
        super().__init__(
            f"refusing to send {what} {segment!r} to GitHub: as a path segment it would be "
            "empty or a dot segment (`.` or `..`), which moves the request to another path",
            fix=f"rename the {what}; runkeys refuses such names before it writes anything",
        )
        self.segment = segment


def quote_path(segment: str, *, what: str = "name") -> str:
    """`segment` as one path segment, percent-encoded; `UnsafePathSegment` when it would be
    empty or a dot segment, as given or once decoded."""
    if _is_unsafe(segment):
        raise UnsafePathSegment(what, segment)
    return urllib.parse.quote(segment, safe="")


def _is_unsafe(segment: str) -> bool:
    if not segment:
        return True
    text = segment
    for _ in range(_MAX_DECODES + 1):
        if any(part in (".", "..") for part in _SEPARATORS.split(text)):
            return True
        decoded = urllib.parse.unquote(text)
        if decoded == text:
            return not decoded
        text = decoded
    return True  # still encoded after that many levels: nobody's name


def split_repository(full_name: str) -> tuple[str, str]:
    owner, _, name = full_name.partition("/")
    if not owner or not name or "/" in name:
        raise ValueError(f"{full_name!r} is not an owner/name repository")
    return owner, name


def repository_path(full_name: str) -> str:
    """`/repos/{owner}/{repo}` for `owner/name`, each part a checked segment."""
    owner, name = split_repository(full_name)
    return f"/repos/{quote_path(owner, what='owner')}/{quote_path(name, what='repository')}"


def environment_path(full_name: str, environment: str) -> str:
    """`/repos/{owner}/{repo}/environments/{environment_name}`."""
    name = quote_path(environment, what="environment")
    return f"{repository_path(full_name)}/environments/{name}"
