"""The issuer's keys, cached to the second: read again once older than `max_age` (not at it),
for an unknown `kid` once the cooldown has passed (exactly at it, not before), an issuer named
with a trailing slash the same issuer, and a JWKS entry the verifier cannot use skipped without
hiding the keys after it. The clock is the test's: `time.monotonic`, which PyJWKClient times
its cache and cooldown by."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from runkeys.errors import AuthError
from runkeys.oidc import KeySet, OIDCUnavailableError, OIDCVerifier
from runkeys_sandbox.launch import ThreadServer
from runkeys_sandbox.server import OIDCIssuer, RunClaims
from tests.service.kit import AUDIENCE

CLAIMS = RunClaims(repository="octo/app", repository_id=1296269, run_id=4242)
START = 1000.0


class Issuer:
    """A discovery document and JWKS over HTTP; the JWKS may carry entries before the real keys,
    or no `keys` at all. Counts JWKS reads."""

    def __init__(self) -> None:
        self.jwks_reads = 0
        self.before: list[Any] = []
        self.no_keys = False
        self.named_as: str | None = None
        self.server = ThreadServer(self._app)
        self.oidc = OIDCIssuer(self.server.url)

    def _app(self, environ: dict[str, Any], start: Callable[..., Any]) -> Any:
        path = Request(environ).path
        if path == "/.well-known/openid-configuration":
            body: Any = {**self.oidc.discovery(), "issuer": self.named_as or self.oidc.issuer}
        elif path == "/.well-known/jwks":
            self.jwks_reads += 1
            body = {} if self.no_keys else {"keys": self.before + self.oidc.jwks()["keys"]}
        else:
            return Response("no", status=404)(environ, start)
        return Response(json.dumps(body), mimetype="application/json")(environ, start)


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    made = Issuer()
    yield made
    made.server.stop()


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    made = Clock()
    monkeypatch.setattr(time, "monotonic", made)
    return made


def verifier(issuer: Issuer, name: str | None = None) -> OIDCVerifier:
    keys = KeySet(name or issuer.oidc.issuer, max_age=3600, cooldown=60)
    return OIDCVerifier(issuer.oidc.issuer, AUDIENCE, keys=keys)


def stranger_token(issuer: Issuer) -> str:
    claims = CLAIMS.claims(
        issuer=issuer.oidc.issuer, audience=AUDIENCE, now=int(time.time()), lifetime=300
    )
    return OIDCIssuer(issuer.oidc.issuer).sign(claims)


def test_keys_are_read_again_once_older_than_max_age_and_not_at_it(
    issuer: Issuer, clock: Clock
) -> None:
    check = verifier(issuer)
    check.verify(issuer.oidc.token_for(CLAIMS, AUDIENCE))
    clock.now = START + 3600
    check.verify(issuer.oidc.token_for(CLAIMS, AUDIENCE))
    assert issuer.jwks_reads == 1
    clock.now = START + 3600.5
    check.verify(issuer.oidc.token_for(CLAIMS, AUDIENCE))
    assert issuer.jwks_reads == 2


def test_an_unknown_kid_reads_the_keys_again_once_the_cooldown_has_passed(
    issuer: Issuer, clock: Clock
) -> None:
    check = verifier(issuer)
    check.verify(issuer.oidc.token_for(CLAIMS, AUDIENCE))
    clock.now = START + 59.5
    with pytest.raises(AuthError, match="does not publish"):
        check.verify(stranger_token(issuer))
    assert issuer.jwks_reads == 1
    clock.now = START + 60
    with pytest.raises(AuthError, match="does not publish"):
        check.verify(stranger_token(issuer))
    assert issuer.jwks_reads == 2


def test_an_issuer_named_with_a_trailing_slash_is_the_same_issuer(issuer: Issuer) -> None:
    check = verifier(issuer, name=issuer.oidc.issuer + "/")
    assert check.verify(issuer.oidc.token_for(CLAIMS, AUDIENCE)).run_id == 4242
    issuer.named_as = issuer.oidc.issuer + "/"
    check = verifier(issuer)
    assert check.verify(issuer.oidc.token_for(CLAIMS, AUDIENCE)).run_id == 4242


def test_entries_the_verifier_cannot_use_do_not_hide_the_keys_after_them(issuer: Issuer) -> None:
    issuer.before = [
        {"kty": "RSA", "kid": "broken", "n": "not-base64!", "e": "AQAB"},
        {"kty": "EC", "kid": "curve", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
        "not an object",
    ]
    identity = verifier(issuer).verify(issuer.oidc.token_for(CLAIMS, AUDIENCE))
    assert identity.run_id == 4242


def test_a_jwks_without_keys_publishes_none(issuer: Issuer) -> None:
    issuer.no_keys = True
    with pytest.raises(AuthError) as caught:
        verifier(issuer).verify(issuer.oidc.token_for(CLAIMS, AUDIENCE))
    assert caught.value.cause == "The token was signed with a key the issuer does not publish"


@pytest.mark.timeout(10)  # without its timeout, the request would hang until this one
def test_an_issuer_that_never_answers_is_unavailable_after_the_timeout() -> None:
    """A listening socket that accepts and never answers: without a timeout, every request
    that needs the keys would wait for it forever."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        keys = KeySet(url, timeout=0.2)
        with pytest.raises(OIDCUnavailableError):
            keys.key("any")
