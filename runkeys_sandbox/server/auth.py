"""Who is calling, and may they: App JWTs, installation tokens, workflow tokens, PAT-like tokens.

JWT rules are GitHub's, messages from PyGithub's recordings and issue reports: RS256, `iss` the
App id (string or number), `exp` at most ten minutes ahead, `iat` not in the future beyond skew:
https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app
Refusals follow GitHub's endpoint ↔ permission table (`runkeys_sandbox.server.permissions`)."""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from runkeys_sandbox.server.errors import (
    BAD_CREDENTIALS,
    NOT_ACCESSIBLE_INTEGRATION,
    NOT_ACCESSIBLE_PAT,
    REQUIRES_AUTH,
    ApiError,
    not_found,
)
from runkeys_sandbox.server.permissions import Requirement, required
from runkeys_sandbox.server.state import App, Repository, Token, World

JWT_MAX_LIFETIME = 600
CLOCK_SKEW = 60  # GitHub advises backdating `iat` by 60 s for drift; it tolerates as much ahead

JWT_UNDECODABLE = "A JSON web token could not be decoded"
JWT_EXPIRED = (
    "'Expiration time' claim ('exp') must be a numeric value representing the future time at "
    "which the assertion expires"
)
JWT_TOO_LONG = "'Expiration time' claim ('exp') is too far in the future"
JWT_BAD_IAT = (
    "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was "
    "issued"
)
JWT_BAD_ISS = "'Issuer' claim ('iss') must be an Integer"  # UNVERIFIED wording
APP_NOT_FOUND = "Integration not found"

# Endpoints GitHub's permission table does not list (organization secrets are listed under the
# organization permission "Secrets" in GitHub's docs).
EXTRA_REQUIREMENTS: dict[tuple[str, str], tuple[Requirement, ...]] = {
    ("GET", "/orgs/{org}/actions/secrets/public-key"): (
        Requirement("organization_secrets", "read"),
    ),
    ("PUT", "/orgs/{org}/actions/secrets/{secret_name}"): (
        Requirement("organization_secrets", "write"),
    ),
    ("DELETE", "/orgs/{org}/actions/secrets/{secret_name}"): (
        Requirement("organization_secrets", "write"),
    ),
}

# What a workflow's GITHUB_TOKEN may hold: the `permissions:` keys of a workflow (SchemaStore
# `permissions-event`); no secrets, administration or environments:
# https://docs.github.com/actions/security-guides/automatic-token-authentication#permissions-for-the-github_token
WORKFLOW_TOKEN_PERMISSIONS = {
    "actions": "write",
    "checks": "write",
    "contents": "write",
    "deployments": "write",
    "issues": "write",
    "metadata": "read",
    "packages": "write",
    "pull_requests": "write",
    "statuses": "write",
}


@dataclass(frozen=True)
class Caller:
    kind: str  # "anonymous" | "app" | "installation" | "workflow" | "pat"
    app: App | None = None
    token: Token | None = None

    @property
    def rate_key(self) -> str:
        """Whose budget a request spends: an installation's tokens share one, as on GitHub."""
        if self.app is not None:
            return f"app:{self.app.id}"
        if self.token is not None:
            if self.token.installation is not None:
                return f"installation:{self.token.installation.id}"
            return f"token:{id(self.token)}"
        return "anonymous"

    def rate_refusal(self) -> str:
        """GitHub's message when the primary rate limit is spent."""
        if self.token is not None and self.token.installation is not None:
            return f"API rate limit exceeded for installation ID {self.token.installation.id}."
        if self.kind == "anonymous":
            return (
                "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated "
                "requests get a higher rate limit. Check out the documentation for more details.)"
            )
        return "API rate limit exceeded for user ID 583231."


ANONYMOUS = Caller("anonymous")


def authenticate(world: World, authorization: str | None) -> Caller:
    """The caller an `Authorization` header names; 401 for anything GitHub would refuse."""
    if not authorization or not authorization.strip():
        return ANONYMOUS
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() not in ("bearer", "token") or not credential:
        raise ApiError(401, BAD_CREDENTIALS)
    if _looks_like_jwt(credential):
        return Caller("app", app=verify_app_jwt(world, credential))
    token = world.tokens.get(credential)
    if token is None or token.revoked:
        raise ApiError(401, BAD_CREDENTIALS)
    if token.expires_at is not None and world.now() >= token.expires_at:
        raise ApiError(401, BAD_CREDENTIALS)
    return Caller(token.kind, token=token)


def _looks_like_jwt(credential: str) -> bool:
    return credential.startswith("eyJ") and credential.count(".") == 2


def verify_app_jwt(world: World, encoded: str) -> App:
    """The App that signed `encoded`, or the 401 GitHub answers."""
    try:
        header = jwt.get_unverified_header(encoded)
        claims: dict[str, Any] = jwt.decode(encoded, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise ApiError(401, JWT_UNDECODABLE) from None
    if header.get("alg") != "RS256":
        raise ApiError(401, JWT_UNDECODABLE)
    app = world.apps.get(_app_id(claims.get("iss")))
    if app is None:
        raise ApiError(401, APP_NOT_FOUND)
    try:
        jwt.decode(
            encoded,
            app.private_key.public_key(),
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError:
        raise ApiError(401, JWT_UNDECODABLE) from None
    _check_times(claims, world.now())
    return app


def _app_id(issuer: object) -> int:
    if isinstance(issuer, int) and not isinstance(issuer, bool):
        return issuer
    if isinstance(issuer, str) and issuer.isdigit():
        return int(issuer)
    raise ApiError(401, JWT_BAD_ISS)


def _check_times(claims: Mapping[str, Any], now: float) -> None:
    iat, exp = _number(claims.get("iat")), _number(claims.get("exp"))
    if iat is None or iat > now + CLOCK_SKEW:
        raise ApiError(401, JWT_BAD_IAT)
    if exp is None or exp <= now:
        raise ApiError(401, JWT_EXPIRED)
    if exp - iat > JWT_MAX_LIFETIME or exp > now + JWT_MAX_LIFETIME + CLOCK_SKEW:
        raise ApiError(401, JWT_TOO_LONG)


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


# -- authorisation ------------------------------------------------------------------------------


def require_app(caller: Caller) -> App:
    """Endpoints that only an App's JWT may call (`/app/…`, `…/installation`)."""
    if caller.app is not None:
        return caller.app
    if caller.kind == "anonymous":
        raise ApiError(401, REQUIRES_AUTH)
    raise ApiError(401, JWT_UNDECODABLE)  # a token where a JWT belongs does not decode as one


def requirements(method: str, template: str) -> tuple[Requirement, ...]:
    return EXTRA_REQUIREMENTS.get((method, template)) or required(method, template)


def authorize_repository(
    world: World, caller: Caller, repo: Repository, needs: tuple[Requirement, ...]
) -> None:
    """404 if the credential cannot see `repo`, 403 if it lacks a permission `needs`."""
    if caller.kind == "anonymous":
        raise ApiError(401, REQUIRES_AUTH)
    if caller.token is None:  # an App's JWT acts as the App, not as an installation
        raise ApiError(403, NOT_ACCESSIBLE_INTEGRATION)
    if repo.id not in world.token_repository_ids(caller.token):
        raise not_found()
    check_permissions(caller.token, needs)


def check_permissions(token: Token, needs: tuple[Requirement, ...]) -> None:
    missing = [need for need in needs if not grants(token.permissions, need)]
    if missing:
        message = NOT_ACCESSIBLE_PAT if token.kind == "pat" else NOT_ACCESSIBLE_INTEGRATION
        raise ApiError(403, message, headers=accepted_permissions_header(needs))


def grants(permissions: Mapping[str, str], need: Requirement) -> bool:
    level = permissions.get(need.permission)
    return level == "write" or (level == "read" and need.access == "read")


def accepted_permissions_header(needs: tuple[Requirement, ...]) -> dict[str, str]:
    """GitHub's `X-Accepted-GitHub-Permissions`: the permissions an endpoint accepts."""
    if not needs:
        return {}
    return {"X-Accepted-GitHub-Permissions": ",".join(f"{n.permission}={n.access}" for n in needs)}


def exceeds(requested: Mapping[str, str], granted: Mapping[str, str]) -> bool:
    """Whether `requested` asks for more than `granted` (unknown names and levels do)."""
    for name, level in requested.items():
        held = granted.get(name)
        if level not in ("read", "write") or held is None:
            return True
        if level == "write" and held != "write":
            return True
    return False


# -- token values -------------------------------------------------------------------------------

_ALPHABET = string.ascii_letters + string.digits


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def installation_token_value(app_id: int) -> str:
    """Opaque `ghs_` tokens of varying length: the classic 40 characters, or the longer
    `ghs_<app id>_…` form GitHub rolls out since 2026: don't assume 40
    (https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app)."""
    if secrets.randbelow(2):
        return "ghs_" + _random(36)
    return f"ghs_{app_id}_" + _random(40 + secrets.randbelow(60))


def pat_value() -> str:
    return f"github_pat_11{_random(20)}_{_random(59)}"
