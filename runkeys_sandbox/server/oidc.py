"""A GitHub Actions OIDC issuer for tests and the sandbox: an RSA key, its JWKS, and tokens with
the claims GitHub puts in a job's token (https://docs.github.com/actions/reference/security/oidc).
Pure: the sandbox serves it over HTTP.

IDs are strings in GitHub's tokens (`repository_id: "1296269"`), and so they are here.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TOKEN_LIFETIME = 300  # GitHub's tokens live minutes; the example token shows nbf→exp of 900 s


@dataclass(frozen=True)
class RunClaims:
    """The job a token is for, as a test describes it."""

    repository: str
    repository_id: int
    run_id: int
    run_attempt: int = 1
    run_number: int = 1
    ref: str = "refs/heads/main"
    sha: str = "e" * 40
    environment: str | None = None
    event_name: str = "push"
    actor: str = "octocat"
    actor_id: int = 583231
    repository_owner_id: int = 1
    workflow: str = "CI"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    def subject(self) -> str:
        base = f"repo:{self.repository}"
        if self.environment:
            return f"{base}:environment:{self.environment}"
        if self.event_name == "pull_request":
            return f"{base}:pull_request"
        return f"{base}:ref:{self.ref}"

    def claims(self, *, issuer: str, audience: str, now: int, lifetime: int) -> dict[str, Any]:
        workflow_ref = f"{self.repository}/.github/workflows/ci.yml@{self.ref}"
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "sub": self.subject(),
            "aud": audience,
            "iss": issuer,
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime,
            "ref": self.ref,
            "ref_type": "tag" if self.ref.startswith("refs/tags/") else "branch",
            "sha": self.sha,
            "repository": self.repository,
            "repository_id": str(self.repository_id),
            "repository_owner": self.owner,
            "repository_owner_id": str(self.repository_owner_id),
            "repository_visibility": "private",
            "run_id": str(self.run_id),
            "run_number": str(self.run_number),
            "run_attempt": str(self.run_attempt),
            "actor": self.actor,
            "actor_id": str(self.actor_id),
            "event_name": self.event_name,
            "workflow": self.workflow,
            "workflow_ref": workflow_ref,
            "workflow_sha": self.sha,
            "job_workflow_ref": workflow_ref,
            "job_workflow_sha": self.sha,
            "runner_environment": "github-hosted",
            "head_ref": "",
            "base_ref": "",
        }
        if self.environment:
            claims["environment"] = self.environment
        if self.event_name == "pull_request":
            claims["head_ref"] = "feature"
            claims["base_ref"] = "main"
        claims.update(self.extra)
        return claims


class OIDCIssuer:
    """Signs tokens with one RS256 key (another can be rotated in), and describes itself."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer.rstrip("/")
        self._keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.rotate()

    def rotate(self) -> str:
        """A new signing key; the old ones stay in the JWKS. Returns the new `kid`."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        kid = hashlib.sha256(der).hexdigest()[:40].upper()
        self._keys.append((kid, key))
        return kid

    @property
    def kid(self) -> str:
        return self._keys[-1][0]

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        return self._keys[-1][1]

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/.well-known/jwks",
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": [
                "sub",
                "aud",
                "exp",
                "iat",
                "iss",
                "jti",
                "nbf",
                "ref",
                "repository",
                "repository_id",
                "run_id",
                "run_attempt",
            ],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid"],
        }

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self._keys:
            numbers = key.public_key().public_numbers()
            keys.append(
                {
                    "kty": "RSA",
                    "alg": "RS256",
                    "use": "sig",
                    "kid": kid,
                    "n": _b64uint(numbers.n),
                    "e": _b64uint(numbers.e),
                }
            )
        return {"keys": keys}

    def sign(self, claims: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
        """Any claims, signed RS256 with the current key (tests forge the rest themselves)."""
        return jwt.encode(
            claims,
            self.private_key,
            algorithm="RS256",
            headers={"kid": self.kid, "typ": "JWT", **(headers or {})},
        )

    def token_for(
        self,
        run: RunClaims,
        audience: str,
        *,
        now: int | None = None,
        lifetime: int = TOKEN_LIFETIME,
        **overrides: Any,
    ) -> str:
        """A token as GitHub would issue it to a job of `run`, with `overrides` applied."""
        issued = int(time.time()) if now is None else now
        claims = run.claims(issuer=self.issuer, audience=audience, now=issued, lifetime=lifetime)
        claims.update(overrides)
        return self.sign(claims)


def _b64uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
