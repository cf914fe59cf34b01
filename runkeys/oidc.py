"""GitHub Actions OIDC: the runner asks for a job's token (`RunnerOIDC`, as actions/toolkit
`oidc-utils.ts` does); the service verifies it (`OIDCVerifier`, as PyPI's warehouse does).

Every `jwt.decode` option is spelled out, a `jti` is accepted once, and the repository is known by
its immutable id:
https://docs.github.com/actions/security-for-github-actions/security-hardening-your-deployments/about-security-hardening-with-openid-connect"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
import requests
from urllib3.util.retry import Retry

from runkeys import http_session, ids
from runkeys.errors import AuthError, ConfigError, LeaseServiceError, RunkeysError
from runkeys.github.paths import UnsafePathSegment, repository_path

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
ALGORITHM = "RS256"
LEEWAY_SECONDS = 30  # clock skew between the runner, GitHub and us; warehouse allows 30 s
OIDC_DOCS = (
    "https://docs.github.com/actions/security-for-github-actions/security-hardening-your-"
    "deployments/about-security-hardening-with-openid-connect"
)
ID_TOKEN_DOCS = OIDC_DOCS + "#adding-permissions-settings"
ID_TOKEN_FIX = (
    "give the job permission to request an OIDC token:\n\n"
    "    permissions:\n"
    "      id-token: write  # runkeys registers its leases with the service\n"
    "      contents: read\n\n"
    "(a `permissions:` block replaces the defaults, so list what else the job needs)"
)
_PULL_REF = re.compile(r"^refs/pull/([0-9]+)/(?:merge|head)$")


# --- the runner's side ----------------------------------------------------------------------


class RunnerOIDC:
    """The job's OIDC tokens, from the runner: `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=…`
    with `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN` → `{"value": "<JWT>"}`.

    Ask for a new token per request to the service: each is accepted once (its `jti` is
    remembered). A dropped connection, a 5xx or a 429 is asked again a few times; every token
    is handed to `on_token` the moment it exists (the action masks it)."""

    def __init__(
        self,
        request_url: str | None,
        request_token: str | None,
        audience: str,
        *,
        http: requests.Session | None = None,
        on_token: Callable[[str], None] = lambda token: None,
        timeout: float = 10.0,
        retry: Retry | None = None,
    ) -> None:
        if not request_url or not request_token:
            raise ConfigError(
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                "is not set, so this job cannot get an OIDC token for the lease service",
                fix=ID_TOKEN_FIX,
                docs=ID_TOKEN_DOCS,
            )
        self.request_url = request_url
        self._request_token = request_token
        self.audience = audience
        self._http = http or http_session.session(
            retry or http_session.backoff(3, factor=1.0, cap=10.0)
        )
        self._on_token = on_token
        self._timeout = timeout

    def url(self) -> str:
        """The runner's URL (it has a query string already) with the audience added."""
        separator = "&" if urllib.parse.urlsplit(self.request_url).query else "?"
        return f"{self.request_url}{separator}audience={urllib.parse.quote(self.audience, safe='')}"

    def token(self) -> str:
        try:
            response = self._http.get(
                self.url(),
                headers={
                    "Authorization": f"Bearer {self._request_token}",
                    "Accept": "application/json; api-version=2.0",
                },
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise LeaseServiceError(
                f"could not reach the runner's OIDC token endpoint: {type(exc).__name__}",
                fix="re-run the job; the runner's token service was unreachable",
            ) from None
        status = response.status_code
        if status != 200:
            raise LeaseServiceError(
                f"the runner refused an OIDC token (HTTP {status})",
                status=status,
                fix=ID_TOKEN_FIX if status < 500 else "re-run the job later",
                docs=ID_TOKEN_DOCS,
            )
        return self._token_from(response)

    def _token_from(self, response: requests.Response) -> str:
        try:
            value = response.json()["value"]
        except (ValueError, KeyError, TypeError):
            value = None
        if not isinstance(value, str) or value.count(".") != 2:
            raise LeaseServiceError(
                "the runner's OIDC token answer had no token in it", fix="re-run the job"
            )
        self._on_token(value)
        return value


# --- the service's side ---------------------------------------------------------------------


@dataclass(frozen=True)
class RunIdentity:
    """Who a verified token speaks for. Everything the service records about a lease's origin
    comes from here, never from a request body."""

    repository: str
    repository_id: int
    owner: str
    owner_id: int
    run_id: int
    run_attempt: int
    ref: str
    sha: str
    event_name: str
    environment: str | None
    subject: str
    jti: str
    expires_at: datetime
    # Read by the broker's policy and audit (docs/policy.md); absent from older tests' tokens.
    run_number: int | None = None
    ref_type: str | None = None
    workflow_ref: str | None = None
    job_workflow_ref: str | None = None
    runner_environment: str | None = None
    actor: str | None = None

    @property
    def pull_request(self) -> int | None:
        """The PR number of a `pull_request` run: its ref is `refs/pull/<n>/merge`."""
        match = _PULL_REF.fullmatch(self.ref)
        return int(match.group(1)) if match else None


def _id(value: Any) -> bool:
    return ids.parse(value) is not None


def _attempt(value: Any) -> bool:
    return ids.parse(value, ids.MAX_NUMBER) is not None


def _text(longest: int) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and 0 < len(value) <= longest


def _repository(value: Any) -> bool:
    """`owner/name` whose parts can be put into a GitHub path as they are (no `..`), no
    longer than the ledger keeps."""
    if not _text(REPOSITORY_LONGEST)(value) or value.count("/") != 1:
        return False
    try:
        repository_path(value)
    except (ValueError, UnsafePathSegment):
        return False
    return True


def _ref(value: Any) -> bool:
    """A pull request's ref names its number, which must be one the ledger holds."""
    if not _text(REF_LONGEST)(value):
        return False
    pull = _PULL_REF.fullmatch(value)
    return pull is None or ids.parse(pull.group(1), ids.MAX_NUMBER) is not None


# What the ledger keeps of a token, at most (handler/ledger/tables.py's columns).
JTI_LONGEST, REPOSITORY_LONGEST, REF_LONGEST, ENVIRONMENT_LONGEST = 200, 200, 255, 255
SHA_LONGEST, EVENT_LONGEST = 64, 64
# As long as the audit's columns keep them (handler/ledger/tables.py, policy_decisions).
WORKFLOW_REF_LONGEST, ACTOR_LONGEST = 500, 255  # owner/repo/.github/workflows/<path>@<ref>

# Claim → check. A token missing one of these, or with a malformed one, is refused whole.
CLAIM_CHECKS: Mapping[str, Callable[[Any], bool]] = {
    "jti": _text(JTI_LONGEST),
    "sub": _text(4096),
    "repository": _repository,
    "repository_id": _id,
    "repository_owner": _text(REPOSITORY_LONGEST),
    "repository_owner_id": _id,
    "run_id": _id,
    "run_attempt": _attempt,
    "ref": _ref,
    "sha": _text(SHA_LONGEST),
    "event_name": _text(EVENT_LONGEST),
}
# Checked when present: a job without an environment has none.
OPTIONAL_CLAIM_CHECKS: Mapping[str, Callable[[Any], bool]] = {
    "environment": lambda value: value in (None, "") or _text(ENVIRONMENT_LONGEST)(value),
    "run_number": lambda value: value is None or _attempt(value),
    **{
        name: (lambda value: value is None or _text(WORKFLOW_REF_LONGEST)(value))
        for name in ("ref_type", "workflow_ref", "job_workflow_ref", "runner_environment")
    },
    "actor": lambda value: value is None or _text(ACTOR_LONGEST)(value),
}


class KeySet(jwt.PyJWKClient):
    """The issuer's signing keys: `PyJWKClient` (the set cached for `max_age`, read again for
    an unknown `kid` at most once per `cooldown`) at the `jwks_uri` of the issuer's discovery
    document, read again with each key set and refused if it names another issuer."""

    def __init__(
        self,
        issuer: str,
        *,
        session: requests.Session | None = None,
        max_age: float = 3600.0,
        cooldown: float = 60.0,
        timeout: float = 5.0,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.discovery = f"{self.issuer}/.well-known/openid-configuration"
        super().__init__(
            self.discovery, lifespan=max_age, cooldown_duration=cooldown, timeout=timeout
        )
        self._http = session or http_session.session(http_session.backoff(2, factor=0.25, cap=1.0))

    def key(self, kid: str) -> jwt.PyJWK:
        try:
            found = self.get_signing_key(kid)
        except (jwt.PyJWKClientConnectionError, ValueError) as exc:
            cause = type(exc.__cause__ or exc).__name__
            raise OIDCUnavailableError(
                f"Could not read the OIDC issuer's keys from {self.uri} ({cause})",
                fix="check RUNKEYS_OIDC_ISSUER and that this host can reach it",
            ) from None
        except jwt.PyJWTError:
            found = None  # no such kid, or no usable key at all
        if found is None or found.algorithm_name != ALGORITHM:
            raise AuthError(
                "The token was signed with a key the issuer does not publish",
                fix="use a token from the configured OIDC issuer",
            )
        return found

    def fetch_data(self) -> Any:
        """The key set at the discovery document's `jwks_uri`, if it names this issuer."""
        try:
            response = self._http.get(self.discovery, timeout=self.timeout)
            response.raise_for_status()
            discovery = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise OIDCUnavailableError(
                f"Could not read the OIDC discovery document {self.discovery} "
                f"({type(exc).__name__})",
                fix="check RUNKEYS_OIDC_ISSUER and that this host can reach it",
            ) from None
        if not isinstance(discovery, dict):
            raise OIDCUnavailableError(f"{self.discovery} did not answer with a JSON object")
        if str(discovery.get("issuer", "")).rstrip("/") != self.issuer:
            raise AuthError(
                "The OIDC discovery document names another issuer",
                fix="set RUNKEYS_OIDC_ISSUER to the issuer exactly as it names itself",
            )
        jwks_uri = str(discovery.get("jwks_uri", ""))
        if urllib.parse.urlsplit(jwks_uri).scheme not in ("http", "https"):
            raise OIDCUnavailableError(f"{self.discovery} names no http(s) jwks_uri")
        self.uri = jwks_uri
        return super().fetch_data()


class OIDCUnavailableError(RunkeysError):
    """The issuer's keys cannot be read: the token may be fine, we cannot tell (503, not 401)."""

    title = "OIDC issuer unreachable"


class OIDCVerifier:
    """Verifies GitHub Actions OIDC tokens for one issuer and audience."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        keys: KeySet | None = None,
        first_use: Callable[[str, datetime], bool] | None = None,
        leeway: int = LEEWAY_SECONDS,
    ) -> None:
        if not audience:
            raise ValueError("an audience is required")
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.keys = keys or KeySet(self.issuer)
        # The replay guard: records `jti` until the token expires, False if seen before.
        self.first_use = first_use
        self.leeway = leeway

    def verify(self, token: str) -> RunIdentity:
        """The identity a token proves, or `AuthError` with a reason safe to show."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("The bearer token is not a JWT") from None
        if header.get("alg") != ALGORITHM:
            raise AuthError(f"The token must be signed with {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("The token's header names no signing key (kid)")
        claims = self._decode(token, self.keys.key(kid))
        for name, check in CLAIM_CHECKS.items():
            if not check(claims.get(name)):
                raise AuthError(f"The token's {name!r} claim is missing, malformed or out of range")
        for name, check in OPTIONAL_CLAIM_CHECKS.items():
            if not check(claims.get(name)):
                raise AuthError(f"The token's {name!r} claim is malformed or out of range")
        identity = _identity(claims)
        if self.first_use is not None and not self.first_use(identity.jti, identity.expires_at):
            raise AuthError(
                "The token was used before",
                fix="request a fresh OIDC token for every call to the service",
            )
        return identity

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iat": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    "strict_aud": True,
                    "require": ["iss", "aud", "exp", "iat", "nbf", "jti", "sub"],
                },
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("The token has expired", fix="request a fresh token") from None
        except jwt.InvalidAudienceError:
            raise AuthError(
                "The token is for another audience",
                fix="request the token with the audience the service is configured with",
            ) from None
        except jwt.InvalidIssuerError:
            raise AuthError("The token is from another issuer") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("The token is not valid yet") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"The token has no {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"The token is not valid ({type(exc).__name__})") from None


def _identity(claims: Mapping[str, Any]) -> RunIdentity:
    environment = claims.get("environment")
    try:
        expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (OverflowError, ValueError, OSError):
        raise AuthError("The token's 'exp' claim is out of range") from None
    return RunIdentity(
        repository=str(claims["repository"]),
        repository_id=int(claims["repository_id"]),
        owner=str(claims["repository_owner"]),
        owner_id=int(claims["repository_owner_id"]),
        run_id=int(claims["run_id"]),
        run_attempt=int(claims["run_attempt"]),
        ref=str(claims["ref"]),
        sha=str(claims["sha"]),
        event_name=str(claims["event_name"]),
        environment=str(environment) if isinstance(environment, str) and environment else None,
        subject=str(claims["sub"]),
        jti=str(claims["jti"]),
        expires_at=expires_at,
        run_number=ids.parse(claims.get("run_number"), ids.MAX_NUMBER),
        ref_type=_optional(claims, "ref_type"),
        workflow_ref=_optional(claims, "workflow_ref"),
        job_workflow_ref=_optional(claims, "job_workflow_ref"),
        runner_environment=_optional(claims, "runner_environment"),
        actor=_optional(claims, "actor"),
    )


def _optional(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and value else None
