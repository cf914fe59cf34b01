"""Rows of the ledger as frozen records: what the worker, the API and the CLI pass around."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
            id=row["id"],
            installation_id=row["installation_id"],
            repository_id=row["repository_id"],
            repository=row["repository"],
            owner_id=row["owner_id"],
            run_id=row["run_id"],
            run_attempt=row["run_attempt"],
            pr_number=row["pr_number"],
            job_environment=row["job_environment"],
            ref=row["ref"],
            sha=row["sha"],
            event_name=row["event_name"],
            key_name=row["key_name"],
            provider=row["provider"],
            connection=row["connection"],
            connection_target=row["connection_target"],
            reference=row["reference"],
            label=row["label"],
            fingerprint=row["fingerprint"],
            secret=secret,
            lifetime=Lifetime(row["lifetime"]),
            issued_at=row["issued_at"],
            expires_at=row["expires_at"],
            state=LeaseState(row["state"]),
            retire_requested_at=row["retire_requested_at"],
            retire_reason=row["retire_reason"],
            provider_only=bool(row["provider_only"]),
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            last_error=row["last_error"],
            retired_at=row["retired_at"],
            created_at=row["created_at"],
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
        return cls(
            lease_id=row["lease_id"],
            at=row["at"],
            actor=row["actor"],
            action=row["action"],
            detail=row["detail"],
        )
