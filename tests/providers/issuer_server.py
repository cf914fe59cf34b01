"""A small in-house token issuer, served for real over HTTP (werkzeug) on a free loopback port,
for the `http` provider's tests.

    POST   /api/v1/tokens         Basic auth (the connection's account); JSON {name, expires_at}
                                  → 201 {"data": {"id", "token", "expires_at"}}; honours
                                  Idempotency-Key
    DELETE /api/v1/tokens/<id>    Basic auth → 204, or 404 when there is no such token
    GET    /api/v1/whoami         Bearer <token> → 200 {"name"}, or 401
    GET    /api/v1/admin          Bearer <token> → 403: what a test token may not do

`fail_next(status, times)` makes the next requests answer `status` (a 5xx, say) before the
issuer behaves again; `requests` records what was asked.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

ACCOUNT = ("ci", "issuer-admin-Secr3t")


@dataclass
class Issued:
    id: str
    token: str = field(repr=False)
    name: str
    expires_at: str


class Issuer:
    def __init__(self) -> None:
        self.tokens: dict[str, Issued] = {}
        self.by_idempotency: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.failures: list[int] = []
        self.answer_override: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self.failures += [status] * times

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
            self.requests.append((request.method, request.path))
            if self.failures:
                return _json({"message": "temporarily unavailable"}, self.failures.pop(0))
        path, method = request.path, request.method
        if path == "/api/v1/tokens" and method == "POST":
            return self._admin(request) or self._mint(request)
        if path.startswith("/api/v1/tokens/") and method == "DELETE":
            return self._admin(request) or self._revoke(path.rsplit("/", 1)[1])
        if path in ("/api/v1/whoami", "/api/v1/admin") and method == "GET":
            return self._as_token(request, admin=path.endswith("admin"))
        return _json({"message": "not found"}, 404)

    def _admin(self, request: Request) -> Response | None:
        expected = "Basic " + base64.b64encode(":".join(ACCOUNT).encode()).decode()
        if request.headers.get("Authorization") != expected:
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
            )
            self.tokens[issued.id] = issued
            if key:
                self.by_idempotency[key] = issued.id
            override = self.answer_override
        return _json(override if override is not None else {"data": _public(issued)}, 201)

    def _revoke(self, token_id: str) -> Response:
        with self._lock:
            if self.tokens.pop(token_id, None) is None:
                return _json({"message": "no such token"}, 404)
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


def _public(issued: Issued) -> dict[str, str]:
    return {"id": issued.id, "token": issued.token, "expires_at": issued.expires_at}


def _json(body: Any, status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")
