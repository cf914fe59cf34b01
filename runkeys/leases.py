"""What a lease is, as the action registers it and the service keeps it.

A lease says: this key exists at this provider, under this reference, written to this secret, and
must be retired when its lifetime ends or its TTL passes, whichever comes first. A lease never
holds the key's value: only a SHA-256 fingerprint for matching a leaked value to its lease.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec

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


class SecretTarget(msgspec.Struct, frozen=True):
    """Where a key's value was written in GitHub: a repository secret or an environment secret."""

    repository: str  # owner/name
    name: str
    environment: str | None = None

    @property
    def scope(self) -> str:
        return f"environment {self.environment}" if self.environment else "repository"


def fingerprint(value: str) -> str:
    """SHA-256 of the value, hex: lets a leaked value be matched to its lease, and nothing more
    (every value runkeys mints has at least 128 bits of entropy, so it cannot be guessed back)."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_lease_id() -> str:
    """Lease ids are made by the action, so registering twice (a retry) cannot lease twice."""
    return uuid.uuid4().hex


# The lease API's bodies, one schema for the action that sends them and the service that decodes
# them: a body that does not fit is refused with msgspec's message, naming the field.
LeaseId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]
Fingerprint = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
MAX_LEASES_PER_REQUEST = 100  # a spec has at most 100 keys
MAX_PARTS = 8  # a database key has one secret part (PASSWORD); room to spare, not to abuse


class PartFingerprint(msgspec.Struct, frozen=True):
    """The fingerprint of one secret part of a key (`runkeys.issuance.secret_parts`)."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9_]{0,31}$")]
    fingerprint: Fingerprint


class LeaseRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One lease as the action registers it (`POST /v1/leases`). Repository, run, attempt,
    environment and ref are not here: the service takes them from the verified OIDC token."""

    id: LeaseId
    key_name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    provider: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    # How the provider finds the credential again: a role name, a key id.
    reference: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    fingerprint: Fingerprint
    lifetime: Lifetime
    issued_at: UtcTime
    expires_at: UtcTime
    # Repeated on purpose: optional fields shaped like RunIdentity's, each its own wire schema.
    connection: str | None = None
    # `runkeys.connections.Target.fingerprint()` of the connection minted on: the service
    # registers the lease only if its own connection of that name reaches the same target.
    connection_target: str | None = None
    secret: SecretTarget | None = None
    # The action created `secret.environment`: a claim the service checks against GitHub's
    # `created_at` and protection settings before it ever deletes the environment.
    environment_created: bool = False
    params: Mapping[str, Any] = {}  # the provider's spec parameters
    # The key's secret parts, printed alone, are found by the service's log scan by these.
    parts: Annotated[tuple[PartFingerprint, ...], msgspec.Meta(max_length=MAX_PARTS)] = ()

    @property
    def label(self) -> str:
        """The name the credential carries at its provider. Never sent: the service makes it
        again from the id and key name, and checks the reference against it."""
        return labels.label(self.id, self.key_name)


class Registration(msgspec.Struct, frozen=True):
    """`POST /v1/leases`."""

    leases: Annotated[
        list[LeaseRequest], msgspec.Meta(min_length=1, max_length=MAX_LEASES_PER_REQUEST)
    ]


class RegisteredLease(msgspec.Struct, frozen=True):
    id: str
    state: LeaseState
    expires_at: UtcTime


class Registered(msgspec.Struct, frozen=True):
    """The answer to `POST /v1/leases`: every lease of the request."""

    leases: list[RegisteredLease]


class RetireOutcome(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the post step (or a rollback) did with one lease, as the service is told."""

    id: LeaseId
    outcome: Literal["revoked", "failed"]
    error: str | None = None  # short and scrubbed
    # Revoked, and its secret not deleted yet: the service's answer says whether it still may be.
    secret_pending: bool = False


class Retirement(msgspec.Struct, frozen=True):
    """`POST /v1/leases/retire`."""

    leases: Annotated[
        list[RetireOutcome], msgspec.Meta(min_length=1, max_length=MAX_LEASES_PER_REQUEST)
    ]


class RetiredLease(msgspec.Struct, frozen=True, omit_defaults=True):
    """A reported lease's state; and, for one reported with `secret_pending`, the id of the
    newer live lease that wrote its secret since (None: delete it)."""

    id: str
    state: LeaseState
    secret_kept_for: str | msgspec.UnsetType | None = msgspec.UNSET


class Retired(msgspec.Struct, frozen=True):
    """The answer to `POST /v1/leases/retire`."""

    leases: list[RetiredLease]
