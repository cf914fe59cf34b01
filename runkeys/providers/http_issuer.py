"""`http`: a generic issuer, for in-house services that mint and revoke their own tokens over a
JSON API; the spec says which requests to send and where the answer keeps the value.

Every request, a revoke from a ledger row included, is checked before it is sent (`http_templates`,
`http_paths`): below the connection's URL, on its host only, redirects not followed. Retries,
`Idempotency-Key`, `Runkeys-Label` and how references are bound: docs/providers.md#http."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import requests

from runkeys import http_session
from runkeys.connections import Connection
from runkeys.errors import ParamError, ProviderError
from runkeys.providers import http_templates as templates
from runkeys.providers.base import (
    Minted,
    MintRequest,
    Provider,
    RevokeRequest,
    check_known,
    connection_of,
    get_int,
    get_str,
    http_transient,
    is_transient,
    utc,
)
from runkeys.providers.http_paths import UnsafeRequest, check_target
from runkeys.scrub import scrub, short

PARAMS = {"auth", "mint", "response", "revoke", "timeout", "retries"}
AUTH_MODES = ("basic", "bearer", "none")
DEFAULT_TIMEOUT = 10  # seconds, per attempt
DEFAULT_RETRIES = 3
BACKOFF_FACTOR = 0.5  # seconds; the second retry waits twice that, plus jitter
BACKOFF_CAP = 8.0
GONE_STATUSES = {404, 410}
LABEL_HEADER = "Runkeys-Label"  # on revoke: the label the mint sent as Idempotency-Key


class HttpIssuerProvider(Provider):
    name = "http"
    needs_connection = True

    def check_params(self, params: Mapping[str, Any]) -> None:
        check_known(params, PARAMS)
        auth = get_str(params, "auth")
        if auth is not None and auth not in AUTH_MODES:
            raise ParamError("auth", f"unknown auth {auth!r}", fix=f"use one of {AUTH_MODES}")
        get_int(params, "timeout", DEFAULT_TIMEOUT, low=1, high=120)
        get_int(params, "retries", DEFAULT_RETRIES, low=0, high=10)
        templates.check_request("mint", params.get("mint"), templates.MINT_PLACEHOLDERS)
        templates.check_request("revoke", params.get("revoke"), templates.REVOKE_PLACEHOLDERS)
        templates.check_response(params.get("response"))

    def mint(self, request: MintRequest) -> Minted:
        connection = connection_of(self.name, request)
        params = request.params
        fields = {
            "label": request.label,
            "key_name": request.key_name,
            "expires_at": utc(request.expires_at).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        call = self._call("mint", params, fields, own={"Idempotency-Key": request.label})
        with self.scrubbed("mint", *connection.secrets()):
            answer = self._send(connection, params, call, ok=lambda s: 200 <= s < 300)
        try:
            return self._minted(request, answer)
        except ProviderError:
            self._undo(connection, request, answer)
            raise

    def revoke(self, request: RevokeRequest) -> None:
        connection = connection_of(self.name, request)
        own = {LABEL_HEADER: request.label} if request.label is not None else {}
        call = self._call("revoke", request.params, {"reference": request.reference}, own=own)
        with self.scrubbed("revoke", *connection.secrets()):
            self._send(
                connection,
                request.params,
                call,
                ok=lambda s: 200 <= s < 300 or s in GONE_STATUSES,
            )

    def reference_matches(self, reference: str, *, label: str, params: Mapping[str, Any]) -> bool:
        """Any the revoke request can carry as it is: the issuer chooses references, and
        revokes carry the label for it to check. Not `..` or `a/b`, which would name another
        path, nor anything else the revoke would refuse to send."""
        try:
            templates.build_call(
                "revoke", params.get("revoke"), {"reference": reference}, default_method="DELETE"
            )
        except (ParamError, UnsafeRequest):
            return False
        return True

    def is_transient(self, exc: BaseException) -> bool:
        return http_transient(exc) or is_transient(exc)

    # -- one request, retried ------------------------------------------------------------------

    def _call(
        self,
        field: str,
        params: Mapping[str, Any],
        fields: Mapping[str, str],
        *,
        own: Mapping[str, str],
    ) -> templates.Call:
        """The request the spec's `field` describes, checked again; runkeys' headers last."""
        default = "POST" if field == "mint" else "DELETE"
        try:
            call = templates.build_call(field, params.get(field), fields, default_method=default)
        except (ParamError, UnsafeRequest) as exc:
            raise _unsafe(field, exc) from None
        call.headers.update(own)
        return call

    def _send(
        self,
        connection: Connection,
        params: Mapping[str, Any],
        call: templates.Call,
        *,
        ok: Callable[[int], bool],
    ) -> requests.Response:
        """The answer `ok` accepts; connection errors, 408, 429 and 5xx are tried again."""
        retry = http_session.backoff(
            int(params.get("retries", DEFAULT_RETRIES)) + 1,
            factor=BACKOFF_FACTOR,
            cap=BACKOFF_CAP,
            pause=self.deps.sleep,
        )
        with http_session.session(retry) as session:
            sending = self._prepared(session, connection, params, call)
            url = sending.url or ""
            # What `requests.request` adds: proxies and the CA bundle from the environment.
            settings = session.merge_environment_settings(url, {}, None, None, None)
            timeout = int(params.get("timeout", DEFAULT_TIMEOUT))
            answer = session.send(sending, timeout=timeout, allow_redirects=False, **settings)
        if ok(answer.status_code):
            return answer
        raise self._refused(
            f"{call.method} {url}",
            answer,
            attempts=http_session.attempts(answer),
            secrets=connection.secrets(),
            retryable=answer.status_code in http_session.RETRY_STATUSES,
        )

    def _prepared(
        self,
        session: requests.Session,
        connection: Connection,
        params: Mapping[str, Any],
        call: templates.Call,
    ) -> requests.PreparedRequest:
        """The request as it goes on the wire, its URL checked there: `requests` resolves dot
        segments and decodes `%2e`, so only the prepared URL says where it really goes."""
        base = _base_url(connection)
        headers = {**_auth(connection, params.get("auth")), **call.headers}
        try:
            headers = templates.fill_headers(headers, _credential_fields(connection))
            prepared = session.prepare_request(
                requests.Request(call.method, base + call.path, headers=headers, json=call.body)
            )
            check_target(prepared.url or "", base)
        except UnsafeRequest as exc:
            raise _unsafe(call.method, exc) from None
        return prepared

    def _refused(
        self,
        request: str,
        answer: requests.Response,
        *,
        attempts: int,
        secrets: tuple[str, ...],
        retryable: bool,
    ) -> ProviderError:
        body = short(scrub(answer.text, secrets), 200)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        fix = (
            "the issuer is failing or busy; it will be tried again later"
            if retryable
            else "check the spec's request against the issuer's API, and the connection's rights"
        )
        return ProviderError(
            self.name,
            f"{request} answered {answer.status_code}{tries}: {body or 'no body'}",
            retryable=retryable,
            fix=fix,
        )

    # -- the answer ----------------------------------------------------------------------------

    def _minted(self, request: MintRequest, answer: requests.Response) -> Minted:
        spec = request.params["response"]
        try:
            document = answer.json()
        except ValueError:
            raise self._bad_answer("is not JSON") from None
        value = templates.find(document, spec["value"])
        reference = templates.find(document, spec["reference"])
        if not isinstance(value, str) or not value:
            raise self._bad_answer(f"has no string at `{spec['value']}`", value)
        if not isinstance(reference, str | int) or isinstance(reference, bool) or reference == "":
            raise self._bad_answer(f"has no id at `{spec['reference']}`", value)
        if not self.reference_matches(str(reference), label=request.label, params=request.params):
            raise self._bad_answer(
                f"has an id at `{spec['reference']}` that the revoke request cannot carry "
                "(not one path segment)",
                value,
            )
        expires_at = request.expires_at
        if "expires_at" in spec:
            issued = _parse_time(templates.find(document, spec["expires_at"]))
            if issued is None:
                raise self._bad_answer(f"has no time at `{spec['expires_at']}`", value)
            expires_at = min(utc(expires_at), issued)
        return Minted(value=value, reference=str(reference), expires_at=expires_at)

    def _bad_answer(self, what: str, value: Any = None) -> ProviderError:
        cause = short(
            scrub(f"the issuer's answer {what}", [value] if isinstance(value, str) else [])
        )
        return ProviderError(
            self.name,
            cause,
            retryable=False,
            fix="point `response.value`, `response.reference` (and `response.expires_at`) at the "
            "fields of the issuer's JSON answer, as dotted paths like data.token",
        )

    def _undo(
        self, connection: Connection, request: MintRequest, answer: requests.Response
    ) -> None:
        """Revoke what an answer we cannot use created, if it names it; the mint fails anyway."""
        params = request.params
        try:
            reference = templates.find(answer.json(), params["response"]["reference"])
            if isinstance(reference, str | int) and not isinstance(reference, bool):
                self.revoke(RevokeRequest(str(reference), params, connection, label=request.label))
        except (ValueError, ProviderError):
            pass  # nothing to name, or the issuer refuses: the mint's own error says enough


def _unsafe(request: str, exc: ParamError | UnsafeRequest) -> ProviderError:
    why = f"{exc.field}: {exc.cause}" if isinstance(exc, ParamError) else str(exc)
    return ProviderError(
        "http",
        f"refusing to send the {request} request: {why}",
        retryable=False,
        fix="a reference the issuer chose must be one path segment, and a template must stay "
        "below the connection's URL and leave runkeys' own headers alone; a lease that names "
        "anything else is forged or damaged: check its history, and the issuer, by hand",
        docs="docs/providers.md#http",
    )


def _base_url(connection: Connection) -> str:
    """The connection's URL without its credentials, without a trailing slash."""
    parts = connection.parsed
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderError(
            "http",
            f"{connection.name}: not an http(s) URL",
            retryable=False,
            fix="use https://user:token@issuer.example/base/",
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _credential_fields(connection: Connection) -> dict[str, str]:
    parts = connection.parsed
    return {
        "user": urllib.parse.unquote(parts.username or ""),
        "password": connection.password or "",
    }


def _auth(connection: Connection, mode: str | None) -> dict[str, str]:
    """The Authorization header. By default: Basic for `https://user:secret@…`, a bearer token
    for `https://:token@…` (no user name), none for a URL without credentials."""
    creds = _credential_fields(connection)
    if mode is None:
        mode = "none" if not creds["password"] else ("basic" if creds["user"] else "bearer")
    if mode == "basic":
        pair = f"{creds['user']}:{creds['password']}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    if mode == "bearer":
        return {"Authorization": f"Bearer {creds['password'] or creds['user']}"}
    return {}


def _parse_time(raw: Any) -> datetime | None:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return datetime.fromtimestamp(raw, UTC)
    if isinstance(raw, str):
        try:
            return utc(datetime.fromisoformat(raw.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None
