"""Rows of the ledger as frozen records: what the worker, the API and the CLI pass around."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import RowMapping

from runkeys.leases import LeaseState, Lifetime, SecretTarget

# States in which a lease still holds a live credential (or may): its retirement is not done.
LIVE_STATES = (LeaseState.ACTIVE, LeaseState.REVOKING)
# States the worker takes work from: queued, and failed (retried slowly forever).
WORK_STATES = (LeaseState.REVOKING, LeaseState.FAILED)


@dataclass(frozen=True)
class LeaseRecord:
    id: str
    installation_id: int | None
    repository_id: int
    repository: str
    owner_id: int
    run_id: int
    run_attempt: int
    pr_number: int | None
    job_environment: str | None
    ref: str
    sha: str
    event_name: str
    key_name: str
    provider: str
    connection: str | None
    connection_target: str | None  # None for leases registered before targets were kept
    reference: str
    label: str | None  # None for leases registered before labels were kept
    fingerprint: str
    secret: SecretTarget | None
    lifetime: Lifetime
    issued_at: datetime
    expires_at: datetime
    state: LeaseState
    retire_requested_at: datetime | None
    retire_reason: str | None
    provider_only: bool
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    retired_at: datetime | None
    created_at: datetime
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: RowMapping) -> LeaseRecord:
        secret = None
        if row["secret_name"] is not None:
            secret = SecretTarget(
                repository=row["secret_repository"],
                name=row["secret_name"],
                environment=row["secret_environment"],
            )
        return cls(
            **_same_named(cls, row),
            secret=secret,
            lifetime=Lifetime(row["lifetime"]),
            state=LeaseState(row["state"]),
            provider_only=bool(row["provider_only"]),
            params=dict(row["params"] or {}),
        )

    def to_json(self) -> dict[str, Any]:
        """For `runkeys leases --json` and the API: every field, none of them a value."""

        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "id": self.id,
            "state": self.state.value,
            "key_name": self.key_name,
            "provider": self.provider,
            "connection": self.connection,
            "connection_target": self.connection_target,
            "reference": self.reference,
            "label": self.label,
            "fingerprint": self.fingerprint,
            "lifetime": self.lifetime.value,
            "repository": self.repository,
            "repository_id": self.repository_id,
            "installation_id": self.installation_id,
            "run_id": self.run_id,
            "run_attempt": self.run_attempt,
            "pr_number": self.pr_number,
            "job_environment": self.job_environment,
            "secret": msgspec.to_builtins(self.secret),
            "issued_at": iso(self.issued_at),
            "expires_at": iso(self.expires_at),
            "retire_requested_at": iso(self.retire_requested_at),
            "retire_reason": self.retire_reason,
            "provider_only": self.provider_only,
            "attempts": self.attempts,
            "next_attempt_at": iso(self.next_attempt_at),
            "last_error": self.last_error,
            "retired_at": iso(self.retired_at),
        }


@dataclass(frozen=True)
class LeaseEvent:
    lease_id: str
    at: datetime
    actor: str
    action: str
    detail: str

    @classmethod
    def from_row(cls, row: RowMapping) -> LeaseEvent:
        return cls(**_same_named(cls, row))


# Fields whose values a from_row converts itself; every other field is its column as it is.
_CONVERTED = frozenset({"secret", "lifetime", "state", "provider_only", "params"})


def _same_named(cls: type[LeaseRecord | LeaseEvent], row: RowMapping) -> dict[str, Any]:
    """The record's fields read from the row's columns of the same name, as they are."""
    return {f.name: row[f.name] for f in fields(cls) if f.name not in _CONVERTED}
