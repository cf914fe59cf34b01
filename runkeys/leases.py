"""What a lease is, as the action registers it and the service keeps it.

A lease says: this key exists at this provider, under this reference, written to this secret, and
must be retired when its lifetime ends or its TTL passes, whichever comes first. A lease never
holds the key's value: only a SHA-256 fingerprint for matching a leaked value to its lease.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from runkeys import labels


class Lifetime(StrEnum):
    """When a key is retired, besides its TTL (`ttl`: by its TTL alone)."""

    JOB = "job"  # by the action's post step, at the end of the job that minted it
    RUN = "run"  # by the service, on `workflow_run` `completed` for its run attempt
    PR = "pr"  # by the service, on `pull_request` `closed` for its pull request
    # Only by its TTL (the service's sweeper): a repository secret that later runs read, rotated
    # by a scheduled workflow whose keys outlive the run that minted them.
    TTL = "ttl"


class LeaseState(StrEnum):
    ACTIVE = "active"
    REVOKING = "revoking"
    REVOKED = "revoked"
    FAILED = "failed"


@dataclass(frozen=True)
class SecretTarget:
    """Where a key's value was written in GitHub: a repository secret or an environment secret."""

    repository: str  # owner/name
    name: str
    environment: str | None = None

    @property
    def scope(self) -> str:
        return f"environment {self.environment}" if self.environment else "repository"

    def to_json(self) -> dict[str, Any]:
        return {"repository": self.repository, "name": self.name, "environment": self.environment}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SecretTarget:
        return cls(
            repository=str(data["repository"]),
            name=str(data["name"]),
            environment=None if data.get("environment") is None else str(data["environment"]),
        )


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)


def fingerprint(value: str) -> str:
    """SHA-256 of the value, hex: lets a leaked value be matched to its lease, and nothing more
    (every value runkeys mints has at least 128 bits of entropy, so it cannot be guessed back)."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_lease_id() -> str:
    """Lease ids are made by the action, so registering twice (a retry) cannot lease twice."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class LeaseRequest:
    """One lease as the action registers it (`POST /v1/leases`). Repository, run, attempt,
    environment and ref are not here: the service takes them from the verified OIDC token."""

    id: str
    key_name: str
    provider: str
    reference: str  # how the provider finds the credential again: a role name, a key id
    fingerprint: str
    lifetime: Lifetime
    issued_at: datetime
    expires_at: datetime
    connection: str | None = None
    # `runkeys.connections.Target.fingerprint()` of the connection minted on: the service
    # registers the lease only if its own connection of that name reaches the same target.
    connection_target: str | None = None
    secret: SecretTarget | None = None
    # The action created `secret.environment`: a claim the service checks against GitHub's
    # `created_at` and protection settings before it ever deletes the environment.
    environment_created: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)  # the provider's spec parameters

    @property
    def label(self) -> str:
        """The name the credential carries at its provider. Never sent: the service makes it
        again from the id and key name, and checks the reference against it."""
        return labels.label(self.id, self.key_name)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key_name": self.key_name,
            "provider": self.provider,
            "connection": self.connection,
            "connection_target": self.connection_target,
            "reference": self.reference,
            "fingerprint": self.fingerprint,
            "lifetime": self.lifetime.value,
            "issued_at": self.issued_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "secret": None if self.secret is None else self.secret.to_json(),
            "environment_created": self.environment_created,
            "params": dict(self.params),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LeaseRequest:
        """Parse one lease of a request body. Raises KeyError/ValueError/TypeError on bad input;
        the service turns those into a 400 that names the field."""
        secret = data.get("secret")
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise TypeError("params must be an object")
        return cls(
            id=str(data["id"]),
            key_name=str(data["key_name"]),
            provider=str(data["provider"]),
            connection=None if data.get("connection") is None else str(data["connection"]),
            connection_target=_optional(data.get("connection_target")),
            reference=str(data["reference"]),
            fingerprint=str(data["fingerprint"]),
            lifetime=Lifetime(data["lifetime"]),
            issued_at=datetime.fromisoformat(str(data["issued_at"])),
            expires_at=datetime.fromisoformat(str(data["expires_at"])),
            secret=None if secret is None else SecretTarget.from_json(secret),
            environment_created=bool(data.get("environment_created", False)),
            params=dict(params),
        )
