"""The WSGI application: faults, routing, authentication, rate limits, the handler, and the
request log, in that order. A handler's `ApiError` becomes GitHub's JSON error; anything else is
a sandbox bug and becomes a loud 500 with the traceback in the log (never in the answer)."""

from __future__ import annotations

import json
import logging
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from werkzeug.wrappers import Request, Response

from runkeys_sandbox.routes import apps as routes_apps
from runkeys_sandbox.routes import environments as routes_environments
from runkeys_sandbox.routes import keys as routes_keys
from runkeys_sandbox.routes import misc as routes_misc
from runkeys_sandbox.routes import oidc as routes_oidc
from runkeys_sandbox.routes import runs as routes_runs
from runkeys_sandbox.routes import secret_scanning as routes_secret_scanning
from runkeys_sandbox.routes import secrets as routes_secrets
from runkeys_sandbox.server.auth import (
    ANONYMOUS,
    Caller,
    accepted_permissions_header,
    authenticate,
    authorize_repository,
    check_permissions,
    require_app,
    requirements,
)
from runkeys_sandbox.server.errors import (
    DOCS,
    NOT_ACCESSIBLE_INTEGRATION,
    NOT_ACCESSIBLE_PAT,
    REQUIRES_AUTH,
    SECONDARY_RATE_LIMIT,
    SECONDARY_RATE_LIMIT_DOCS,
    ApiError,
    not_found,
)
from runkeys_sandbox.server.faults import Fault, Faults
from runkeys_sandbox.server.permissions import Requirement
from runkeys_sandbox.server.recording import RecordedRequest, RequestLog
from runkeys_sandbox.server.routing import (
    APP,
    OIDC,
    ORG,
    PUBLIC,
    REPO,
    SELF_TOKEN,
    Call,
    Reply,
    Route,
    match,
    split_path,
)
from runkeys_sandbox.server.state import Account, World

log = logging.getLogger("runkeys_sandbox.server")

ROUTES: tuple[Route, ...] = (
    *routes_misc.ROUTES,
    *routes_secrets.ROUTES,
    *routes_environments.ROUTES,
    *routes_keys.ROUTES,
    *routes_runs.ROUTES,
    *routes_apps.ROUTES,
    *routes_oidc.ROUTES,
    *routes_secret_scanning.ROUTES,
)

API_VERSION = "2022-11-28"
SANDBOX_BUG = "Internal error in the runkeys sandbox (a bug; the traceback is in its log)"

StartResponse = Callable[..., Any]


Control = Callable[[str, str, bytes], Reply]
CONTROL_PREFIX = "/_sandbox/"  # the stand-in's own API (server/control.py), not GitHub's


class SandboxApp:
    def __init__(
        self,
        world: World,
        faults: Faults,
        log_: RequestLog,
        base_url: Callable[[], str],
        control: Control | None = None,
    ):
        self.world = world
        self.faults = faults
        self.log = log_
        self.base_url = base_url
        self.control = control

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        method = request.method.upper()
        path = _raw_path(environ)
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        raw_body = request.get_data(cache=True)
        headers = {k.lower(): v for k, v in request.headers.items()}
        request_id = _request_id()
        exchange = Exchange(method, path, query, raw_body, headers, request_id)
        rate_key = self._enter(exchange)
        try:
            if exchange.reply is None:
                self._answer(exchange)
        finally:
            if rate_key is not None:
                with self.world.lock:
                    self.world.rates.leave(rate_key)
        response = _response(exchange)
        self._record(exchange, response)
        return response(environ, start_response)

    def _answer(self, ex: Exchange) -> None:
        fault = self.faults.take(ex.method, ex.path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            ex.reply = _fault_reply(fault, ex.request_id)
            ex.injected = True
        elif self.control is not None and ex.path.startswith(CONTROL_PREFIX):
            ex.reply = self.control(ex.method, ex.path, ex.raw_body)
        else:
            self._dispatch(ex)

    def _enter(self, ex: Exchange) -> str | None:
        """Count the request among its credential's concurrent ones (when the secondary limits
        are enforced): from its arrival, a slow answer included. The key to `leave` with, or
        None; a request beyond the limit is answered here."""
        world = self.world
        with world.lock:
            if world.rates.secondary is None:
                return None
            try:
                key = authenticate(world, ex.headers.get("authorization")).rate_key
            except ApiError:
                return None  # answered as it would be without the limits
            try:
                world.rates.enter(key, ex.request_id)
            except ApiError as refused:
                ex.operation = self._operation(ex)
                ex.reply = Reply(
                    refused.status, refused.body(SECONDARY_RATE_LIMIT_DOCS), refused.headers
                )
                return None
            return key

    def _operation(self, ex: Exchange) -> str | None:
        """The documented operation a request is for (callers hold the world lock)."""
        try:
            found = match(ROUTES, ex.method, self._resolve_alias(split_path(ex.path)))
        except ApiError:
            return None
        return None if found is None else f"{found[0].method} {found[0].template}"

    def _dispatch(self, ex: Exchange) -> None:
        route: Route | None = None
        try:
            with self.world.lock:
                segments = self._resolve_alias(split_path(ex.path))
                found = match(ROUTES, ex.method, segments)
                if found is None:
                    raise not_found()
                route, params = found
                ex.operation = f"{route.method} {route.template}"
                ex.reply = self._serve(ex, route, params)
        except ApiError as error:
            docs = DOCS if error.status == 401 or route is None else route.docs
            headers = {**ex.extra_headers, **error.headers}
            ex.reply = Reply(error.status, error.body(docs), headers)
        except Exception as exc:  # a bug in the sandbox: loud, but no traceback to the client
            log.exception("sandbox bug answering %s %s", ex.method, ex.path)
            ex.unexpected_error = f"{type(exc).__name__}: {exc}"
            ex.reply = Reply(500, {"message": SANDBOX_BUG, "documentation_url": DOCS})

    def _resolve_alias(self, segments: list[str]) -> list[str]:
        """`/repositories/{id}/…` is GitHub's id-based alias of `/repos/{owner}/{repo}/…`
        (its `Link` headers use it)."""
        if len(segments) >= 2 and segments[0] == "repositories" and segments[1].isdigit():
            repo = self.world.repository_by_id(int(segments[1]))
            if repo is None:
                raise not_found()
            return ["repos", repo.owner, repo.name, *segments[2:]]
        return segments

    def _serve(self, ex: Exchange, route: Route, params: dict[str, str]) -> Reply:
        world = self.world
        caller = ANONYMOUS
        if route.access != OIDC:
            caller = authenticate(world, ex.headers.get("authorization"))
            ex.caller = caller.kind
            if route.access != PUBLIC:  # `GET /rate_limit` is free
                budget = world.rates.charge(
                    caller.kind,
                    caller.rate_key,
                    world.now(),
                    refusal=caller.rate_refusal(),
                    method=ex.method,
                    request_id=ex.request_id,
                )
                ex.extra_headers.update(budget.headers())
        call = Call(
            world=world,
            base_url=self.base_url(),
            method=ex.method,
            path=ex.path,
            params=params,
            query=ex.query,
            raw_body=ex.raw_body,
            headers=ex.headers,
            caller=caller,
            route=route,
        )
        needs = requirements(route.method, route.template)
        if caller.token is not None:
            ex.extra_headers.update(accepted_permissions_header(needs))
        self._authorize(call, needs)
        reply = route.handler(call)
        reply.headers = {**ex.extra_headers, **reply.headers}
        return reply

    def _authorize(self, call: Call, needs: tuple[Requirement, ...]) -> None:
        world, caller, route = self.world, call.caller, call.route
        if route.access == REPO:
            call.repo = world.repository(call.params["owner"], call.params["repo"])
            if call.repo is None:
                raise not_found()
            authorize_repository(world, caller, call.repo, needs)
        elif route.access == ORG:
            call.account = _organization(call, needs)
        elif route.access == APP:
            require_app(caller)
        elif route.access == SELF_TOKEN:
            _require_installation_token(caller)

    def _record(self, ex: Exchange, response: Response) -> None:
        reply = ex.reply
        assert reply is not None
        entry = RecordedRequest(
            method=ex.method,
            path=ex.path,
            query={k: v[-1] for k, v in ex.query.items()},
            status=reply.status,
            request_body=ex.raw_body.decode("utf-8", "replace") if ex.raw_body else None,
            # What was sent, parsed again: a test cannot reach into the sandbox's state through it.
            response_body=_recorded_body(reply, response),
            operation=ex.operation,
            caller=ex.caller,
            injected=ex.injected,
            unexpected_error=ex.unexpected_error,
            response_headers=dict(response.headers.items()),
        )
        self.log.append(entry)


@dataclass
class Exchange:
    """One request and, once answered, its reply."""

    method: str
    path: str
    query: dict[str, list[str]]
    raw_body: bytes
    headers: dict[str, str]
    request_id: str
    reply: Reply | None = None
    operation: str | None = None
    caller: str = "anonymous"
    injected: bool = False
    unexpected_error: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)


def _organization(call: Call, needs: tuple[Requirement, ...]) -> Account:
    account = call.world.accounts.get(call.params["org"].lower())
    if account is None or account.type != "Organization":
        raise not_found()
    caller = call.caller
    if caller.kind == "anonymous":
        raise ApiError(401, REQUIRES_AUTH)
    token = caller.token
    if token is None:
        raise ApiError(403, NOT_ACCESSIBLE_INTEGRATION)
    if token.installation is not None and token.installation.account is not account:
        raise not_found()
    check_permissions(token, needs)
    return account


def _require_installation_token(caller: Caller) -> None:
    if caller.kind == "anonymous":
        raise ApiError(401, REQUIRES_AUTH)
    if caller.kind == "pat":
        raise ApiError(403, NOT_ACCESSIBLE_PAT)
    if caller.token is None:
        raise ApiError(403, NOT_ACCESSIBLE_INTEGRATION)


def _raw_path(environ: dict[str, Any]) -> str:
    """The path as the client sent it (werkzeug's server keeps it in RAW_URI/REQUEST_URI)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        path = urllib.parse.urlsplit(raw).path if "://" in raw else raw.split("?", 1)[0]
        return path or "/"
    return urllib.parse.quote(environ.get("PATH_INFO", "/"))


def _recorded_body(reply: Reply, response: Response) -> Any:
    """The JSON sent, parsed again; a file only by its size (a log archive may hold anything)."""
    if reply.body is None:
        return None
    if isinstance(reply.body, bytes):
        return f"<{len(reply.body)} bytes>"
    return json.loads(response.get_data())


def _request_id() -> str:
    parts = (
        secrets.token_hex(2),
        secrets.token_hex(2),
        secrets.token_hex(4)[:7],
        secrets.token_hex(4),
    )
    return ":".join(parts).upper() + ":" + secrets.token_hex(4).upper()


def _fault_reply(fault: Fault, request_id: str) -> Reply:
    status = fault.status or 500
    if fault.body is not None:
        body = dict(fault.body) if isinstance(fault.body, dict) else fault.body
    elif status in (403, 429):
        message = SECONDARY_RATE_LIMIT.format(request_id=request_id)
        body = {"message": message, "documentation_url": SECONDARY_RATE_LIMIT_DOCS}
    else:
        body = {"message": HTTPStatus(status).phrase, "documentation_url": DOCS}
    if isinstance(body, dict) and "message" in body:
        body.setdefault("status", str(status))
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    return Reply(status, body, headers)


def _response(ex: Exchange) -> Response:
    reply = ex.reply
    assert reply is not None
    headers = {
        "X-GitHub-Media-Type": "github.v3; format=json",
        "X-GitHub-Api-Version-Selected": API_VERSION,
        "X-GitHub-Request-Id": ex.request_id,
        **reply.headers,
    }
    if reply.body is None:
        return Response(b"", status=reply.status, headers=headers)
    if isinstance(reply.body, bytes):  # a file (a run's log archive), not JSON
        return Response(reply.body, status=reply.status, headers=headers)
    data = json.dumps(reply.body, separators=(",", ":")).encode()
    return Response(
        data, status=reply.status, headers=headers, content_type="application/json; charset=utf-8"
    )
