"""Routes, the request a handler sees, and the reply it gives.

Paths are matched segment by segment as sent, then each segment is percent-decoded, so
`environments/a%2Fb` names `a/b` (https://docs.github.com/rest/deployments/environments). Dot
segments are resolved first, as an HTTP server does (RFC 3986 §5.2.4 and §6.2.2.2):
`environments/..` is the repository itself, never an environment called `..`."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runkeys_sandbox.server import bodies
from runkeys_sandbox.server.auth import Caller
from runkeys_sandbox.server.errors import DOCS, not_found
from runkeys_sandbox.server.state import Account, Repository, World

# Who may call a route: a credential reaching the path's repository or organization (GitHub's
# permission table), an App's JWT, the token being revoked, anyone, or the OIDC issuer's callers.
REPO, ORG, APP, SELF_TOKEN, PUBLIC, OIDC = "repo", "org", "app", "self-token", "public", "oidc"

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100


Item = TypeVar("Item")


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-able; None for an empty body (204)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """One request, resolved: its route, parameters, caller, and the repository or account."""

    world: World
    base_url: str
    method: str
    path: str  # as sent, without the query
    params: dict[str, str]
    query: dict[str, list[str]]
    raw_body: bytes
    headers: dict[str, str]  # lower-case names
    caller: Caller
    route: Route
    repo: Repository | None = None
    account: Account | None = None

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def body(self, schema: bodies.Schema, *, optional: bool = False) -> Any:
        return bodies.parse(self.raw_body, schema, optional=optional)

    def numbered(self, items: Mapping[int, Item], param: str) -> Item:
        """The item whose id is the path's `param`: 404 for an unknown or non-numeric one."""
        text = self.params[param]
        item = items.get(int(text)) if text.isdigit() else None
        if item is None:
            raise not_found()
        return item

    @property
    def repository(self) -> Repository:
        assert self.repo is not None, "a REPO route always has a repository"
        return self.repo

    @property
    def now(self) -> float:
        return self.world.now()


Handler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler
    access: str
    docs: str = DOCS

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.template.strip("/").split("/"))


def split_path(raw_path: str) -> list[str]:
    """Path segments, each percent-decoded on its own (so `%2F` stays inside its segment),
    with `.` and `..` segments resolved."""
    segments: list[str] = []
    for part in raw_path.strip("/").split("/"):
        segment = urllib.parse.unquote(part)
        if segment == "..":
            if segments:
                segments.pop()
        elif segment != ".":
            segments.append(segment)
    return segments


def match(
    routes: Sequence[Route], method: str, segments: list[str]
) -> tuple[Route, dict[str, str]] | None:
    for route in routes:
        if route.method != method or len(route.segments) != len(segments):
            continue
        params: dict[str, str] = {}
        for pattern, actual in zip(route.segments, segments, strict=True):
            if pattern.startswith("{") and pattern.endswith("}"):
                if not actual:
                    break
                params[pattern[1:-1]] = actual
            elif pattern != actual:
                break
        else:
            return route, params
    return None


def paginate(call: Call, items: Sequence[Any], *, key: str | None = None) -> Reply:
    """One page of `items` as GitHub pages lists (`per_page` ≤ 100, default 30; `page` from 1),
    with its `Link` header; `key` wraps the page as `{"total_count": n, key: [...]}`."""
    per_page = _positive_int(call.arg("per_page"), DEFAULT_PER_PAGE)
    per_page = min(per_page, MAX_PER_PAGE)
    page = _positive_int(call.arg("page"), 1)
    start = (page - 1) * per_page
    chunk = list(items[start : start + per_page])
    body: Any = {"total_count": len(items), key: chunk} if key else chunk
    last = max(1, -(-len(items) // per_page))
    headers = {}
    links = _links(call, page, last, per_page)
    if links:
        headers["Link"] = links
    return Reply(200, body, headers)


def _positive_int(text: str | None, default: int) -> int:
    if text is None or not text.strip().isdigit() or int(text) < 1:
        return default
    return int(text)


def _links(call: Call, page: int, last: int, per_page: int) -> str:
    if last <= 1:
        return ""
    rels: list[tuple[str, int]] = []
    if page > 1:
        rels += [("prev", min(page - 1, last)), ("first", 1)]
    if page < last:
        rels += [("next", page + 1), ("last", last)]
    return ", ".join(f'<{_page_url(call, n, per_page)}>; rel="{rel}"' for rel, n in rels)


def _page_url(call: Call, page: int, per_page: int) -> str:
    # Repository lists link to `/repositories/{id}/…`, as GitHub's Link headers do.
    path = call.path
    if call.repo is not None and path.startswith("/repos/"):
        rest = path.split("/", 4)[4] if path.count("/") >= 4 else ""
        path = f"/repositories/{call.repo.id}/{rest}"
    query = {k: v[-1] for k, v in call.query.items() if k not in ("page", "per_page")}
    query.update({"per_page": str(per_page), "page": str(page)})
    return f"{call.base_url}{path}?{urllib.parse.urlencode(query)}"
