"""A strict stand-in for the runkeys service's `POST /v1/keys` and `POST /v1/keys/retire`, until
the real endpoint lands (the end-to-end test against it is pending).

Strict, not permissive: every body is decoded with `runkeys.broker`'s Structs (unknown fields
refused), every bearer token is verified against the sandbox's OIDC issuer for `AUDIENCE` and
accepted once, and each key's value is sealed to the public key of the request. What it refuses
is kept in `problems`, so a test that expects a clean exchange asserts that it is empty. A test
sets `answer` to make it misbehave as a broken or hostile service would.
"""

from __future__ import annotations

import base64
import secrets
import string
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec
from nacl.public import PrivateKey, PublicKey, SealedBox
from werkzeug.wrappers import Request, Response

from runkeys.broker import (
    KeysGranted,
    KeysRequest,
    KeysRetirement,
    SealedKey,
    Unsealed,
    seal,
)
from runkeys.errors import AuthError
from runkeys.leases import LeaseState, Retired, RetiredLease, new_lease_id
from runkeys.oidc import OIDCVerifier, RunIdentity
from runkeys.spec import SpecRules, parse_keys
from runkeys_sandbox.launch import ThreadServer
from tests.action.service import AUDIENCE

Answer = Literal[
    "granted",  # every key, sealed to the request's key
    "refused",  # 403, the API's error shape naming `refuse_key`
    "other_key",  # `refuse_key` sealed to another public key
    "not_unsealed",  # `refuse_key`'s box holds something other than an `Unsealed`
    "missing",  # `refuse_key` left out
    "extra",  # one key more than the spec asks for
    "malformed",  # JSON, but no `KeysGranted`
    "unavailable",  # 503 `unavailable_times` times, then granted
    "lost",  # minted, then every answer lost behind a 502 (as a proxy timing out)
]
# What a database key's parts look like: USER and PASSWORD are secret, the rest is not.
DATABASE_PROVIDERS = ("postgres", "mysql")


@dataclass
class Minted:
    """One key the double minted: what the action must export, and where the double put it."""

    name: str
    provider: str
    value: str
    parts: dict[str, str]
    lease_id: str
    lifetime: str


@dataclass
class Call:
    path: str
    request_id: str
    identity: RunIdentity
    body: Any


@dataclass
class BrokerDouble:
    issuer: str
    answer: Answer = "granted"
    refuse_key: str = ""
    unavailable_times: int = 1
    calls: list[Call] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    # request id → what was minted for it and the environment filled from the token
    minted: dict[str, list[Minted]] = field(default_factory=dict)
    environments: dict[str, str | None] = field(default_factory=dict)
    retired: list[KeysRetirement] = field(default_factory=list)
    _seen_jti: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.verifier = OIDCVerifier(self.issuer, AUDIENCE, first_use=self._first_use)

    def _first_use(self, jti: str, expires_at: datetime) -> bool:
        with self._lock:
            if jti in self._seen_jti:
                return False
            self._seen_jti.add(jti)
            return True

    # -- what the tests read -------------------------------------------------------------------

    def values(self) -> list[str]:
        """Every value and part minted, public ones too: a failed step must print none."""
        return [
            v for keys in self.minted.values() for m in keys for v in (m.value, *m.parts.values())
        ]

    # -- WSGI ----------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        with self._lock:
            self.paths.append(request.path)
        response = self._handle(request)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        if request.method != "POST" or request.path not in ("/v1/keys", "/v1/keys/retire"):
            return _error(404, "not_found", f"{request.method} {request.path} is not served here")
        if request.content_type != "application/json":
            return self._refuse(415, f"content type {request.content_type!r}")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            return self._refuse(401, "no bearer token")
        try:
            identity = self.verifier.verify(token)
        except AuthError as exc:
            return self._refuse(401, f"token refused: {exc.cause}")
        if request.path == "/v1/keys/retire":
            return self._retire(request.get_data(), identity)
        return self._keys(request.get_data(), identity)

    def _refuse(self, status: int, why: str) -> Response:
        with self._lock:
            self.problems.append(why)
        code = {400: "bad_request", 401: "invalid_token", 404: "not_found"}.get(status, "refused")
        return _error(status, code, why)

    def _retire(self, data: bytes, identity: RunIdentity) -> Response:
        try:
            retirement = msgspec.json.decode(data, type=KeysRetirement)
        except msgspec.ValidationError as exc:
            return self._refuse(400, f"/v1/keys/retire body: {exc}")
        minted = self.minted.get(retirement.request_id)
        first = next((c for c in self.calls if c.request_id == retirement.request_id), None)
        if minted is None or first is None or first.identity.run_id != identity.run_id:
            return self._refuse(404, f"no request {retirement.request_id} of this run")
        self.calls.append(Call("/v1/keys/retire", retirement.request_id, identity, retirement))
        self.retired.append(retirement)
        chosen = [m for m in minted if retirement.scope == "all" or m.lifetime == "job"]
        answer = Retired([RetiredLease(m.lease_id, LeaseState.REVOKED) for m in chosen])
        return _json(200, answer)

    def _keys(self, data: bytes, identity: RunIdentity) -> Response:
        try:
            request = msgspec.json.decode(data, type=KeysRequest)
        except msgspec.ValidationError as exc:
            return self._refuse(400, f"/v1/keys body: {exc}")
        self.calls.append(Call("/v1/keys", request.request_id, identity, request))
        if self.answer == "unavailable" and self.unavailable_times > 0:
            self.unavailable_times -= 1
            return _error(503, "unavailable", "the ledger is busy")
        if self.answer == "refused":
            body = {
                "error": "policy_denied",
                "message": "rule 'main-only' does not allow ref refs/heads/topic",
                "key": self.refuse_key,
            }
            return _json(403, body)
        specs = parse_keys(request.keys, SpecRules(connections=None))
        environment = _environment(request, identity)
        if request.request_id not in self.minted:  # a retried request mints nothing new
            self.minted[request.request_id] = [
                _mint(s.name, s.provider, s.lifetime.value) for s in specs
            ]
            self.environments[request.request_id] = environment
        if self.answer == "lost":
            return _error(502, "bad_gateway", "the upstream timed out")
        if self.answer == "malformed":
            return _json(200, {"request_id": request.request_id, "leases": []})
        return _json(200, self._granted(request, identity, environment))

    def _granted(
        self, request: KeysRequest, identity: RunIdentity, environment: str | None
    ) -> KeysGranted:
        stranger = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()
        keys = []
        expires = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=30)
        minted = list(self.minted[request.request_id])
        if self.answer == "extra":
            minted.append(_mint("UNASKED", "random", "run"))
        for m in minted:
            if self.answer == "missing" and m.name == self.refuse_key:
                continue
            sealed = seal(request.public_key, Unsealed(m.value, m.parts))
            if m.name == self.refuse_key and self.answer == "other_key":
                sealed = seal(stranger, Unsealed(m.value, m.parts))
            if m.name == self.refuse_key and self.answer == "not_unsealed":
                sealed = _seal_raw(request.public_key, m.value.encode())
            kind = request.destination.kind
            keys.append(
                SealedKey(
                    name=m.name,
                    provider=m.provider,
                    lease_id=m.lease_id,
                    lifetime=m.lifetime,  # type: ignore[arg-type]  # a Lifetime's value
                    expires_at=expires,
                    scope=kind,
                    environment=environment,
                    sealed=sealed,
                )
            )
        created = environment if request.destination.kind == "environment" else None
        return KeysGranted(request_id=request.request_id, keys=keys, created_environment=created)


def _mint(name: str, provider: str, lifetime: str) -> Minted:
    """Values as the providers shape them, random each time (no two tests share one)."""
    password = secrets.token_urlsafe(24)
    if provider in DATABASE_PROVIDERS:
        user = "rk_" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))
        parts = {"USER": user, "PASSWORD": password, "HOST": "db.internal", "PORT": "5432"}
        parts["DATABASE"] = "app"
        value = f"postgresql://{user}:{password}@db.internal:5432/app"
    else:
        parts, value = {}, password
    return Minted(name, provider, value, parts, new_lease_id(), lifetime)


def _environment(request: KeysRequest, identity: RunIdentity) -> str | None:
    """The destination's placeholders filled from the verified token, never from the body."""
    template = request.destination.environment
    if request.destination.kind != "environment" or template is None:
        return None
    return template.format(
        pr=identity.pull_request or "",
        run_id=identity.run_id,
        run_attempt=identity.run_attempt,
        run_number="",
    )


def _seal_raw(public_key: str, raw: bytes) -> str:
    box = SealedBox(PublicKey(base64.b64decode(public_key)))
    return base64.b64encode(box.encrypt(raw)).decode()


def _json(status: int, body: Any) -> Response:
    return Response(msgspec.json.encode(body), status=status, content_type="application/json")


def _error(status: int, code: str, message: str) -> Response:
    return _json(status, {"error": code, "message": message})


class ServedDouble:
    """The double on a loopback port."""

    def __init__(self, issuer: str) -> None:
        self.double = BrokerDouble(issuer)
        self._server = ThreadServer(self.double)
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()
