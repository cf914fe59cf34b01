"""A stand-in for the runkeys service's lease API, for the action's tests until (and besides) the
real service: a tiny werkzeug app on a loopback port that verifies the job's OIDC token against
the sandbox's JWKS (RS256, issuer, audience, expiry, `jti` replay guard) and records every body.

    POST /v1/leases         {"leases": [LeaseRequest.to_json()]} → 201 (200 when all are known)
    POST /v1/leases/retire  {"leases": [{"id", "outcome", "error"?}]} → 200
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import jwt
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Received:
    path: str
    status: int
    body: Any
    claims: dict[str, Any] | None


@dataclass
class LeaseService:
    issuer: str
    audience: str
    received: list[Received] = field(default_factory=list)
    leases: dict[str, dict[str, Any]] = field(default_factory=dict)
    retired: dict[str, dict[str, Any]] = field(default_factory=dict)
    _failures: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    _seen_jti: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    host: str = "127.0.0.1"  # or "::1"

    def __post_init__(self) -> None:
        self._jwks = jwt.PyJWKClient(f"{self.issuer}/.well-known/jwks")
        self._server = make_server(self.host, 0, self._wsgi, threaded=True)
        where = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{where}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)

    def fail(self, path: str, status: int, *, times: int = 1, body: Any = None) -> None:
        """Answer the next `times` requests to `path` with `status` (after verifying them)."""
        answer = body if body is not None else {"error": "failing", "message": "injected"}
        with self._lock:
            self._failures.extend([(path, status, answer)] * times)

    def bodies(self, path: str) -> list[Any]:
        return [r.body for r in self.received if r.path == path]

    # -- the app -----------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        status, answer, claims = self._handle(request)
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
        except ValueError:
            body = request.get_data(as_text=True)
        with self._lock:
            self.received.append(Received(request.path, status, body, claims))
        response = Response(json.dumps(answer), status=status, mimetype="application/json")
        return response(environ, start_response)

    def _handle(self, request: Request) -> tuple[int, Any, dict[str, Any] | None]:
        if request.method != "POST" or request.path not in ("/v1/leases", "/v1/leases/retire"):
            return 404, {"error": "not_found", "message": "no such endpoint"}, None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            claims = self._verify(token if scheme == "Bearer" else "")
        except jwt.PyJWTError as exc:
            return 401, {"error": "unauthorized", "message": f"token refused: {exc}"}, None
        with self._lock:
            for index, (path, status, answer) in enumerate(self._failures):
                if path == request.path:
                    del self._failures[index]
                    return status, answer, claims
        try:
            items = json.loads(request.get_data(as_text=True))["leases"]
        except (ValueError, KeyError, TypeError):
            return 400, {"error": "bad_request", "message": 'expected {"leases": [...]}'}, claims
        if request.path == "/v1/leases":
            return self._register(items, claims)
        with self._lock:
            for item in items:
                self.retired[str(item["id"])] = item
        return 200, {"leases": [{"id": i["id"], "state": i["outcome"]} for i in items]}, claims

    def _register(
        self, items: list[dict[str, Any]], claims: dict[str, Any]
    ) -> tuple[int, Any, dict[str, Any]]:
        with self._lock:
            known = all(item["id"] in self.leases for item in items)
            for item in items:
                self.leases.setdefault(item["id"], {**item, "claims": claims})
        answer = [{"id": i["id"], "state": "active", "expires_at": i["expires_at"]} for i in items]
        return (200 if known else 201), {"leases": answer}, claims

    def _verify(self, token: str) -> dict[str, Any]:
        if not token:
            raise jwt.InvalidTokenError("a Bearer OIDC token is needed")
        key = self._jwks.get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=self.audience,
            issuer=self.issuer,
            leeway=5,
            options={"require": ["exp", "iat", "nbf", "jti", "aud", "iss", "sub"]},
        )
        with self._lock:
            if claims["jti"] in self._seen_jti:
                raise jwt.InvalidTokenError("this token was used before (jti replay)")
            self._seen_jti.add(claims["jti"])
        return claims
