"""OIDC verification (`runkeys.oidc`) against a test issuer served over real HTTP, and the
runner-side token request against the sandbox's runner endpoint."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from werkzeug.wrappers import Request, Response

from runkeys.errors import AuthError, ConfigError, LeaseServiceError
from runkeys.http_session import backoff
from runkeys.oidc import KeySet, OIDCUnavailableError, OIDCVerifier, RunnerOIDC
from runkeys_sandbox.launch import ThreadServer
from runkeys_sandbox.server import OIDCIssuer, RunClaims
from tests.service.conftest import GitHub
from tests.service.kit import AUDIENCE

CLAIMS = RunClaims(repository="octo/app", repository_id=1296269, run_id=4242, run_attempt=2)


class IssuerServer:
    """An OIDC issuer's discovery document and JWKS, served by werkzeug; counts JWKS reads.
    Under `/elsewhere` it serves the same discovery document, naming the issuer at the root."""

    def __init__(self) -> None:
        self.jwks_reads = 0
        self.discovery_reads = 0
        self.down = False
        self.failing = 0  # how many discovery reads to answer 503 before answering again
        self.alg: str | None = None
        self.jwks_uri: str | None = None
        self.server = ThreadServer(self._app)
        self.issuer = OIDCIssuer(self.server.url)

    def _app(self, environ: dict[str, Any], start: Callable[..., Any]) -> Any:
        request = Request(environ)
        discovery = (
            "/.well-known/openid-configuration",
            "/elsewhere/.well-known/openid-configuration",
        )
        if request.path in discovery:
            self.discovery_reads += 1
        if self.down or (request.path in discovery and self.failing > 0):
            self.failing -= request.path in discovery
            response = Response("down", status=503)
        elif request.path in discovery:
            document = self.issuer.discovery()
            document["jwks_uri"] = self.jwks_uri or document["jwks_uri"]
            response = Response(json.dumps(document), mimetype="application/json")
        elif request.path == "/.well-known/jwks":
            self.jwks_reads += 1
            jwks = self.issuer.jwks()
            if self.alg:
                jwks["keys"] = [{**key, "alg": self.alg} for key in jwks["keys"]]
            response = Response(json.dumps(jwks), mimetype="application/json")
        else:
            response = Response("no", status=404)
        return response(environ, start)


@pytest.fixture
def issuer() -> Iterator[IssuerServer]:
    server = IssuerServer()
    yield server
    server.server.stop()


class Seen:
    def __init__(self) -> None:
        self.ids: set[str] = set()

    def __call__(self, jti: str, expires_at: datetime) -> bool:
        if jti in self.ids:
            return False
        self.ids.add(jti)
        return True


def verifier(issuer: IssuerServer, **kwargs: Any) -> OIDCVerifier:
    return OIDCVerifier(issuer.issuer.issuer, AUDIENCE, first_use=Seen(), **kwargs)


def test_a_valid_token_names_the_run_by_its_ids(issuer: IssuerServer) -> None:
    token = issuer.issuer.token_for(CLAIMS, AUDIENCE)
    identity = verifier(issuer).verify(token)
    assert (identity.repository, identity.repository_id) == ("octo/app", 1296269)
    assert (identity.run_id, identity.run_attempt) == (4242, 2)
    assert identity.owner == "octo"
    assert identity.pull_request is None
    assert identity.expires_at > datetime.now(UTC)


def test_the_pull_request_comes_from_the_ref(issuer: IssuerServer) -> None:
    claims = RunClaims("octo/app", 1, 2, ref="refs/pull/17/merge", event_name="pull_request")
    identity = verifier(issuer).verify(issuer.issuer.token_for(claims, AUDIENCE))
    assert identity.pull_request == 17


FROM_NOW = 10**12  # a marker: FROM_NOW + n is "n seconds after the test starts"


def _refused(check: OIDCVerifier, token: str, fragment: str) -> None:
    with pytest.raises(AuthError) as caught:
        check.verify(token)
    assert fragment in caught.value.cause
    assert not token or token not in caught.value.explain()


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"aud": "https://github.com/octo"}, "another audience"),
        ({"aud": [AUDIENCE, "https://github.com/octo"]}, "another audience"),
        ({"iss": "https://token.actions.githubusercontent.com"}, "token is from another issuer"),
        ({"nbf": FROM_NOW + 600}, "not valid yet"),
        ({"repository_id": "octo"}, "'repository_id'"),
        ({"run_attempt": None}, "'run_attempt'"),
        ({"repository": "no-slash"}, "'repository'"),
    ],
    ids=["audience", "audience-list", "issuer", "not-yet", "repo-id", "attempt", "repository"],
)
def test_tokens_with_wrong_claims_are_refused(
    issuer: IssuerServer, overrides: dict[str, Any], fragment: str
) -> None:
    # Times are resolved when the test runs, not when pytest collected it (minutes apart on a
    # loaded machine).
    now = int(time.time())
    resolved = {
        k: now + v - FROM_NOW if isinstance(v, int) and v >= FROM_NOW else v
        for k, v in overrides.items()
    }
    _refused(verifier(issuer), issuer.issuer.token_for(CLAIMS, AUDIENCE, **resolved), fragment)


def test_an_expired_token_is_refused_beyond_the_leeway(issuer: IssuerServer) -> None:
    now = int(time.time())
    recent = issuer.issuer.token_for(CLAIMS, AUDIENCE, now=now - 320, lifetime=300)
    verifier(issuer).verify(recent)  # expired 20 s ago: within the 30 s leeway
    old = issuer.issuer.token_for(CLAIMS, AUDIENCE, now=now - 400, lifetime=300)
    _refused(verifier(issuer), old, "expired")


def test_required_claims_must_be_there(issuer: IssuerServer) -> None:
    claims = CLAIMS.claims(
        issuer=issuer.issuer.issuer, audience=AUDIENCE, now=int(time.time()), lifetime=300
    )
    del claims["jti"]
    _refused(verifier(issuer), issuer.issuer.sign(claims), "'jti'")


def _unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part(header)}.{part(claims)}."


def test_alg_none_is_refused(issuer: IssuerServer) -> None:
    claims = CLAIMS.claims(
        issuer=issuer.issuer.issuer, audience=AUDIENCE, now=int(time.time()), lifetime=300
    )
    token = _unsigned(claims, {"alg": "none", "typ": "JWT", "kid": issuer.issuer.kid})
    _refused(verifier(issuer), token, "RS256")


def test_hs256_signed_with_the_public_key_is_refused(issuer: IssuerServer) -> None:
    """The classic key-confusion attack: the public key used as an HMAC secret."""
    claims = CLAIMS.claims(
        issuer=issuer.issuer.issuer, audience=AUDIENCE, now=int(time.time()), lifetime=300
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.issuer.kid}
    signing_input = _unsigned(claims, header)[:-1].encode()
    import hashlib
    import hmac

    mac = hmac.new(issuer.issuer.public_pem(), signing_input, hashlib.sha256).digest()
    token = signing_input.decode() + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
    _refused(verifier(issuer), token, "RS256")


def test_a_token_signed_by_another_key_with_a_known_kid_is_refused(issuer: IssuerServer) -> None:
    impostor = OIDCIssuer(issuer.issuer.issuer)
    claims = CLAIMS.claims(
        issuer=issuer.issuer.issuer, audience=AUDIENCE, now=int(time.time()), lifetime=300
    )
    token = jwt.encode(
        claims, impostor.private_key, algorithm="RS256", headers={"kid": issuer.issuer.kid}
    )
    _refused(verifier(issuer), token, "InvalidSignatureError")


def test_garbage_is_refused(issuer: IssuerServer) -> None:
    _refused(verifier(issuer), "not.a.jwt", "not a JWT")
    _refused(verifier(issuer), "", "not a JWT")


def test_a_token_is_accepted_once(issuer: IssuerServer) -> None:
    check = verifier(issuer)
    token = issuer.issuer.token_for(CLAIMS, AUDIENCE)
    check.verify(token)
    _refused(check, token, "used before")


class Monotonic:
    """`time.monotonic` as the test sets it: PyJWKClient times its cache and cooldown by it."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> Monotonic:
    clock = Monotonic()
    monkeypatch.setattr(time, "monotonic", clock)
    return clock


def test_keys_are_cached_and_an_unknown_kid_costs_one_refresh(
    issuer: IssuerServer, monotonic: Monotonic
) -> None:
    check = verifier(issuer, keys=KeySet(issuer.issuer.issuer, cooldown=60))
    for _ in range(3):
        check.verify(issuer.issuer.token_for(CLAIMS, AUDIENCE))
    assert issuer.jwks_reads == 1
    stranger = OIDCIssuer(issuer.issuer.issuer)
    claims = CLAIMS.claims(
        issuer=issuer.issuer.issuer, audience=AUDIENCE, now=int(time.time()), lifetime=300
    )
    for _ in range(3):  # within the cooldown: no refresh at all
        _refused(check, stranger.sign(claims), "does not publish")
    assert issuer.jwks_reads == 1
    monotonic.now += 60
    _refused(check, stranger.sign(claims), "does not publish")
    _refused(check, stranger.sign(claims), "does not publish")
    assert issuer.jwks_reads == 2  # one refresh for the unknown kid, not one per token


def test_keys_are_read_again_once_older_than_max_age(
    issuer: IssuerServer, monotonic: Monotonic
) -> None:
    check = verifier(issuer, keys=KeySet(issuer.issuer.issuer, max_age=3600))
    check.verify(issuer.issuer.token_for(CLAIMS, AUDIENCE))
    monotonic.now += 3600
    check.verify(issuer.issuer.token_for(CLAIMS, AUDIENCE))
    assert issuer.jwks_reads == 1
    monotonic.now += 0.5
    check.verify(issuer.issuer.token_for(CLAIMS, AUDIENCE))
    assert issuer.jwks_reads == 2


def test_a_rotated_key_is_picked_up_by_one_refresh(
    issuer: IssuerServer, monotonic: Monotonic
) -> None:
    check = verifier(issuer, keys=KeySet(issuer.issuer.issuer))
    check.verify(issuer.issuer.token_for(CLAIMS, AUDIENCE))
    issuer.issuer.rotate()
    monotonic.now += 61
    check.verify(issuer.issuer.token_for(CLAIMS, AUDIENCE))
    assert issuer.jwks_reads == 2


def test_a_key_for_another_algorithm_is_not_published_for_rs256(issuer: IssuerServer) -> None:
    """The issuer's JWKS names the token's kid, but for RS512: refused, not verified as such."""
    issuer.alg = "RS512"
    _refused(verifier(issuer), issuer.issuer.token_for(CLAIMS, AUDIENCE), "does not publish")


def test_a_jwks_uri_that_is_not_http_is_not_read(issuer: IssuerServer, tmp_path: Path) -> None:
    """The issuer's own keys, in a file the discovery document points at: not opened."""
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(issuer.issuer.jwks()))
    issuer.jwks_uri = keys.as_uri()
    with pytest.raises(OIDCUnavailableError, match="no http"):
        verifier(issuer).verify(issuer.issuer.token_for(CLAIMS, AUDIENCE))


def test_an_https_jwks_uri_is_read(issuer: IssuerServer) -> None:
    """GitHub's own `jwks_uri` is https: followed, here to a port that answers in plain HTTP,
    so the keys cannot be read from that URL, rather than the URL being refused unread."""
    issuer.jwks_uri = issuer.server.url.replace("http://", "https://", 1) + "/.well-known/jwks"
    with pytest.raises(OIDCUnavailableError) as refused:
        verifier(issuer).verify(issuer.issuer.token_for(CLAIMS, AUDIENCE))
    assert str(refused.value).startswith(
        f"Could not read the OIDC issuer's keys from {issuer.jwks_uri} ("
    )


@pytest.mark.timeout(10)  # without its timeout, the request would hang until this one
def test_an_issuer_that_never_answers_is_unavailable_after_the_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        keys = KeySet(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.2)
        with pytest.raises(OIDCUnavailableError):
            keys.key("any")


def test_an_unreachable_issuer_is_not_an_invalid_token(issuer: IssuerServer) -> None:
    issuer.down = True
    with pytest.raises(OIDCUnavailableError):
        verifier(issuer).verify(issuer.issuer.token_for(CLAIMS, AUDIENCE))


def test_a_discovery_read_that_fails_once_is_tried_once_more_and_no_more(
    issuer: IssuerServer,
) -> None:
    """A 503 from the issuer once does not refuse a good token; an issuer that keeps failing
    is asked twice per verification, not more (each try holds the client's request)."""
    issuer.failing = 1
    verifier(issuer).verify(issuer.issuer.token_for(CLAIMS, AUDIENCE))
    assert issuer.discovery_reads == 2

    issuer.failing = 100
    with pytest.raises(OIDCUnavailableError):
        verifier(issuer).verify(issuer.issuer.token_for(CLAIMS, AUDIENCE))
    assert issuer.discovery_reads == 4


def test_a_discovery_document_naming_another_issuer_is_refused(issuer: IssuerServer) -> None:
    """The configured issuer's discovery document is well formed and its `jwks_uri` serves
    the very key the token is signed with, but it names another issuer: refused as such."""
    elsewhere = issuer.issuer.issuer + "/elsewhere"
    served = requests.get(f"{elsewhere}/.well-known/openid-configuration", timeout=5).json()
    assert served["issuer"] == issuer.server.url != elsewhere
    keys = requests.get(served["jwks_uri"], timeout=5).json()["keys"]
    assert [key["kid"] for key in keys] == [issuer.issuer.kid]
    check = OIDCVerifier(elsewhere, AUDIENCE, first_use=Seen())
    claims = CLAIMS.claims(issuer=elsewhere, audience=AUDIENCE, now=int(time.time()), lifetime=300)
    with pytest.raises(AuthError) as caught:
        check.verify(issuer.issuer.sign(claims))
    assert caught.value.cause == "The OIDC discovery document names another issuer"


# --- the runner's side ------------------------------------------------------------------------


def runner(github: GitHub, audience: str = AUDIENCE, **options: Any) -> RunnerOIDC:
    env = github.sandbox.runner_oidc_env(github.claims())
    return RunnerOIDC(
        env["ACTIONS_ID_TOKEN_REQUEST_URL"],
        env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"],
        audience,
        **options,
    )


def test_the_runner_issues_a_fresh_token_for_the_audience(github: GitHub) -> None:
    seen: list[str] = []
    oidc = runner(github, on_token=seen.append)
    first, second = oidc.token(), oidc.token()
    assert seen == [first, second]  # each handed over (to be masked) as it arrives
    check = OIDCVerifier(github.sandbox.oidc_issuer_url, AUDIENCE)
    assert check.verify(first).repository == github.repo.full_name
    assert check.verify(second).jti != check.verify(first).jti


def test_without_id_token_permission_the_job_gets_a_clear_error() -> None:
    with pytest.raises(ConfigError) as caught:
        RunnerOIDC(None, None, AUDIENCE)
    assert "id-token: write" in caught.value.fix


def test_a_refusing_runner_is_reported_at_once_without_its_token(github: GitHub) -> None:
    env = github.sandbox.runner_oidc_env(github.claims())
    request_token = "wrong-" + env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
    waits: list[float] = []
    oidc = RunnerOIDC(
        env["ACTIONS_ID_TOKEN_REQUEST_URL"],
        request_token,
        AUDIENCE,
        retry=backoff(3, factor=1.0, cap=10, pause=waits.append),
    )
    with pytest.raises(LeaseServiceError) as caught:
        oidc.token()
    assert request_token not in caught.value.explain()
    assert "HTTP 40" in caught.value.cause
    assert "id-token: write" in caught.value.fix
    assert waits == []  # a refusal is not asked again


def test_a_failing_runner_is_asked_again(github: GitHub) -> None:
    waits: list[float] = []
    retry = backoff(3, factor=1.0, jitter=0, cap=10, pause=waits.append)
    oidc = runner(github, retry=retry)
    github.sandbox.inject_fault("GET", r"^/_services/.*/idtoken$", status=503, times=2)
    assert OIDCVerifier(github.sandbox.oidc_issuer_url, AUDIENCE).verify(oidc.token())
    assert waits == [2.0]  # urllib3: the first retry at once, then factor·2
    github.sandbox.inject_fault("GET", r"^/_services/.*/idtoken$", status=503, times=3)
    with pytest.raises(LeaseServiceError, match="HTTP 503"):
        oidc.token()


def test_the_runner_url_keeps_its_query(github: GitHub) -> None:
    oidc = runner(github, "aud with spaces&more", http=requests.Session())
    assert "?api-version=" in oidc.request_url
    token = oidc.token()
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "aud with spaces&more"
