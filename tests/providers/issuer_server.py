"""A small in-house token issuer, served for real over HTTP (werkzeug) on a free loopback port,
for the `http` provider's tests.

    POST   /api/v1/tokens         the connection's account (Basic, or its secret as a bearer
                                  token); JSON {name, expires_at}
                                  → 201 {"data": {"id", "token", "expires_at"}}; honours
                                  Idempotency-Key
    DELETE /api/v1/tokens/<id>    Basic auth → 204, or 404 when there is no such token; 403
                                  when `Runkeys-Label` is not the Idempotency-Key it was
                                  minted with (an issuer that authorizes revokes itself)
    GET    /api/v1/whoami         Bearer <token> → 200 {"name"}, or 401
    GET    /api/v1/admin          Bearer <token> → 403: what a test token may not do
    POST   /admin/users/<n>/delete
                                  the account → 204, and user n is gone: an admin endpoint
                                  outside the connection's base path, that no request of the
                                  provider may reach

`fail_next(status, times)` makes the next requests answer `status` (a 5xx, say) before the
issuer behaves again, `delay` slows every answer, `answer_override` replaces the mint's answer;
POST `/api/v1/moved` redirects elsewhere, POST `/api/v1/html` answers HTML; `requests` records
each method and request target as it arrived on the wire (not decoded, not normalised), and
`add` holds a token under an id of the test's choosing.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from runkeys_sandbox.launch import ThreadServer

ACCOUNT = ("ci", "issuer-admin-Secr3t")
LABEL = "Runkeys-Label"


@dataclass
class Issued:
    id: str
    token: str = field(repr=False)
    name: str
    expires_at: str
    label: str | None = None  # the mint's Idempotency-Key: runkeys sends its label


class Issuer:
    def __init__(self) -> None:
        self.tokens: dict[str, Issued] = {}
        self.by_idempotency: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.failures: list[tuple[int, str | None]] = []
        self.delay = 0.0  # seconds before each answer: a slow issuer
        self.answer_override: dict[str, Any] | None = None
        self.users = {1: "alice", 2: "bob"}  # the issuer's own accounts, behind /admin
        self._lock = threading.Lock()
        self._server: ThreadServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        self._server = ThreadServer(self.wsgi)
        return self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        with self._lock:
            self.failures += [(status, retry_after)] * times

    def add(self, token_id: str, label: str | None = None) -> Issued:
        """A token under an id the issuer chose (`v1.2`, `a b`): a reference runkeys gets back."""
        issued = Issued(token_id, "iss_" + secrets.token_urlsafe(24), "added", "", label)
        with self._lock:
            self.tokens[token_id] = issued
        return issued

    def live(self, name: str | None = None) -> list[Issued]:
        with self._lock:
            return [t for t in self.tokens.values() if name is None or t.name == name]

    # -- the API -----------------------------------------------------------------------------

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        with self._lock:
            self.requests.append((request.method, _raw_target(request)))
            failure = self.failures.pop(0) if self.failures else None
        if self.delay:
            time.sleep(self.delay)
        if failure is not None:
            answer = _json({"message": "temporarily unavailable"}, failure[0])
            if failure[1] is not None:
                answer.headers["Retry-After"] = failure[1]
            return answer
        routes: dict[tuple[str, str], Callable[[], Response]] = {
            ("POST", "/api/v1/tokens"): lambda: self._admin(request) or self._mint(request),
            ("GET", "/api/v1/whoami"): lambda: self._as_token(request, admin=False),
            ("GET", "/api/v1/admin"): lambda: self._as_token(request, admin=True),
            ("POST", "/api/v1/html"): lambda: Response("<html>down</html>", mimetype="text/html"),
            ("POST", "/api/v1/moved"): lambda: Response(
                status=307, headers={"Location": "http://127.0.0.1:9/elsewhere"}
            ),
        }
        route = routes.get((request.method, request.path))
        if route is not None:
            return route()
        user = _ADMIN_DELETE.fullmatch(request.path)
        if request.method == "POST" and user is not None:
            return self._admin(request) or self._delete_user(int(user.group(1)))
        if request.method == "DELETE" and request.path.startswith("/api/v1/tokens/"):
            token_id = request.path.rsplit("/", 1)[1]
            return self._admin(request) or self._revoke(token_id, request.headers.get(LABEL))
        return _json({"message": "not found"}, 404)

    def _admin(self, request: Request) -> Response | None:
        basic = "Basic " + base64.b64encode(":".join(ACCOUNT).encode()).decode()
        if request.headers.get("Authorization") not in (basic, f"Bearer {ACCOUNT[1]}"):
            return _json({"message": "bad credentials"}, 401)
        return None

    def _mint(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        key = request.headers.get("Idempotency-Key")
        with self._lock:
            if key and key in self.by_idempotency:
                issued = self.tokens[self.by_idempotency[key]]
                return _json({"data": _public(issued)}, 201)
            issued = Issued(
                id=secrets.token_hex(6),
                token="iss_" + secrets.token_urlsafe(24),
                name=str(body.get("name", "")),
                expires_at=str(body.get("expires_at", "")),
                label=key,
            )
            self.tokens[issued.id] = issued
            if key:
                self.by_idempotency[key] = issued.id
            override = self.answer_override
        return _json(override if override is not None else {"data": _public(issued)}, 201)

    def _revoke(self, token_id: str, label: str | None) -> Response:
        with self._lock:
            issued = self.tokens.get(token_id)
            if issued is None:
                return _json({"message": "no such token"}, 404)
            if label is not None and issued.label is not None and label != issued.label:
                return _json({"message": f"token {token_id} is not {label}'s"}, 403)
            del self.tokens[token_id]
        return Response(status=204)

    def _delete_user(self, number: int) -> Response:
        with self._lock:
            self.users.pop(number, None)
        return Response(status=204)

    def _as_token(self, request: Request, *, admin: bool) -> Response:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        with self._lock:
            found = next((t for t in self.tokens.values() if t.token == token), None)
        if found is None or not header.startswith("Bearer "):
            return _json({"message": "bad token"}, 401)
        if admin:
            return _json({"message": "a test token cannot do this"}, 403)
        return _json({"name": found.name}, 200)


_ADMIN_DELETE = re.compile(r"/admin/users/(\d+)/delete")


def _raw_target(request: Request) -> str:
    """The request target as the client sent it: werkzeug's server keeps it in RAW_URI."""
    raw = request.environ.get("RAW_URI")
    return raw if isinstance(raw, str) else request.full_path.rstrip("?")


def _public(issued: Issued) -> dict[str, str]:
    return {"id": issued.id, "token": issued.token, "expires_at": issued.expires_at}


def _json(body: Any, status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")
