"""Leases in the ledger: registering them for a verified run, what the post step reports, and
finding them again (the CLI).

Registration is idempotent by lease id (the action makes the ids); an id of another run, or a
label another lease holds, is a conflict and nothing is written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Connection, case, func, literal, or_, select, update

from handler.ledger import tables
from handler.ledger.engine import insert_for
from handler.ledger.history import record
from handler.ledger.queue import revoked_columns
from handler.ledger.records import LeaseRecord
from handler.ledger.secrets import newer_writer
from runkeys.ids import parse as parse_id
from runkeys.leases import LeaseRequest, LeaseState, Lifetime
from runkeys.oidc import RunIdentity

leases = tables.leases


class LeaseConflictError(Exception):
    """A lease id is taken by another run, or was registered with other contents."""

    def __init__(self, lease_id: str) -> None:
        super().__init__(lease_id)
        self.lease_id = lease_id


class LabelTakenError(LeaseConflictError):
    """Another lease holds this lease's label: it names a credential already leased."""

    def __init__(self, lease_id: str, label: str) -> None:
        super().__init__(lease_id)
        self.label = label


@dataclass(frozen=True)
class Registered:
    leases: list[LeaseRecord]  # in the order requested
    created: int  # how many were new (0: the whole request was a repeat)


def register(
    conn: Connection,
    identity: RunIdentity,
    requests: Sequence[LeaseRequest],
    *,
    installation_id: int | None,
    now: datetime,
) -> Registered:
    rows = [_row(identity, r, installation_id, now) for r in requests]
    # Any conflict, on the id or on the label, inserts nothing; which one it was is told below.
    inserted = set(
        conn.scalars(
            insert_for(conn, leases).values(rows).on_conflict_do_nothing().returning(leases.c.id)
        )
    )
    found = {r.id: r for r in _by_ids(conn, [r.id for r in requests])}
    for request in requests:
        if request.id in inserted:
            continue
        if request.id not in found:
            raise LabelTakenError(request.id, request.label)
        if not _same(found[request.id], identity, request):
            raise LeaseConflictError(request.id)
    parts = [
        {"lease_id": r.id, "name": part.name, "fingerprint": part.fingerprint}
        for r in requests
        if r.id in inserted
        for part in r.parts
    ]
    if parts:
        conn.execute(tables.lease_parts.insert(), parts)
    record(
        conn,
        [r.id for r in requests if r.id in inserted],
        actor="action",
        action="registered",
        detail=f"registered by {identity.repository} run {identity.run_id} "
        f"attempt {identity.run_attempt} ({identity.event_name} {identity.ref})",
        now=now,
    )
    # One upsert per environment, not per lease: a 10-key run names its environment 10 times,
    # and the upserts in a row end as this one does (the first naming kept, `claimed` or-ed).
    named: dict[str, tuple[str, bool]] = {}
    for request in requests:
        environment = request.secret.environment if request.secret else None
        if request.id in inserted and environment:
            first, claimed = named.get(environment.lower(), (environment, False))
            named[environment.lower()] = (first, claimed or request.environment_created)
    for environment, claimed in named.values():
        name_environment(conn, identity, environment, claimed=claimed, now=now)
    return Registered(leases=[found[r.id] for r in requests], created=len(inserted))


def _row(
    identity: RunIdentity, request: LeaseRequest, installation_id: int | None, now: datetime
) -> dict[str, object]:
    secret = request.secret
    return {
        "id": request.id,
        "installation_id": installation_id,
        "repository_id": identity.repository_id,
        "repository": identity.repository,
        "owner_id": identity.owner_id,
        "run_id": identity.run_id,
        "run_attempt": identity.run_attempt,
        "pr_number": identity.pull_request,
        "job_environment": identity.environment,
        "ref": identity.ref,
        "sha": identity.sha,
        "event_name": identity.event_name,
        "key_name": request.key_name,
        "provider": request.provider,
        "connection": request.connection,
        "connection_target": request.connection_target,
        "reference": request.reference,
        "label": request.label,
        "params": dict(request.params),
        "fingerprint": request.fingerprint,
        "secret_repository": secret.repository if secret else None,
        "secret_name": secret.name if secret else None,
        "secret_environment": secret.environment if secret else None,
        "lifetime": request.lifetime.value,
        "issued_at": request.issued_at,
        "expires_at": request.expires_at,
        "state": LeaseState.ACTIVE.value,
        "provider_only": False,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


def _same(existing: LeaseRecord, identity: RunIdentity, request: LeaseRequest) -> bool:
    """A repeat of the same registration: same run, same key at the same provider."""
    return (
        existing.repository_id == identity.repository_id
        and existing.run_id == identity.run_id
        and existing.run_attempt == identity.run_attempt
        and existing.key_name == request.key_name
        and existing.provider == request.provider
        and existing.reference == request.reference
        and existing.fingerprint == request.fingerprint
    )


def name_environment(
    conn: Connection, identity: RunIdentity, name: str, *, claimed: bool, now: datetime
) -> None:
    """A lease names this environment. The first naming (since runkeys last deleted it) is
    when GitHub must show it created at or after, for runkeys to ever delete it; `claimed`
    (the action says it created it) is needed too, and never enough alone."""
    env = tables.environments
    row = {
        "repository_id": identity.repository_id,
        "name_key": name.lower(),
        "name": name,
        "repository": identity.repository,
        "state": "present",
        "created_at": now,
        "named_at": now,
        "claimed": claimed,
        "note": None,
    }
    statement = insert_for(conn, env).values(row)
    present = env.c.state == "present"
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[env.c.repository_id, env.c.name_key],
            set_={
                # A present row keeps its first naming; any other starts over from now.
                "named_at": case((present, env.c.named_at), else_=statement.excluded.named_at),
                "claimed": case(
                    (present, or_(env.c.claimed, statement.excluded.claimed)),
                    else_=statement.excluded.claimed,
                ),
                "note": case((present, env.c.note), else_=None),
                "deleted_at": case((present, env.c.deleted_at), else_=None),
                "state": "present",
            },
        )
    )


def _by_ids(conn: Connection, ids: Sequence[str]) -> list[LeaseRecord]:
    rows = conn.execute(select(leases).where(leases.c.id.in_(list(ids)))).mappings()
    return [LeaseRecord.from_row(row) for row in rows]


def get(conn: Connection, lease_id: str) -> LeaseRecord | None:
    found = _by_ids(conn, [lease_id])
    return found[0] if found else None


# --- the post step's reports ------------------------------------------------------------------


@dataclass(frozen=True)
class RetireReport:
    lease_id: str
    outcome: Literal["revoked", "failed"]
    error: str = ""  # short and scrubbed by the action; cut again here
    secret_pending: bool = False  # revoked; may the post step still delete its secret?


# A lease the post step revoked: the only kind a later `failed` report of the same run reopens
# (its secret could not be deleted after all).
POST_STEP_REVOKED = "post-step: retired by the job"


@dataclass(frozen=True)
class Reported:
    found: list[LeaseRecord]  # as stored now, in the report's order
    not_found: list[str]
    # For each lease reported with `secret_pending`: the newer live lease that wrote its secret
    # since (the secret is kept), or None (the post step deletes it).
    secret_kept_for: dict[str, str | None]


def apply_reports(
    conn: Connection, identity: RunIdentity, reports: Sequence[RetireReport], *, now: datetime
) -> Reported:
    """Record what the post step did. Only leases of the token's repository and run are seen;
    any other id is reported back as not found (whether it exists elsewhere is not said).

    A lease revoked with its secret pending is asked about now, after the revoke and right
    before the post step's delete, as the worker asks (`handler.ledger.secrets`). A report sent
    again after a lost answer gets the same answer, and records nothing twice."""
    mine = {
        r.id: r
        for r in _by_ids(conn, [r.lease_id for r in reports])
        if r.repository_id == identity.repository_id
        and r.run_id == identity.run_id
        and r.run_attempt == identity.run_attempt
    }
    not_found = [r.lease_id for r in reports if r.lease_id not in mine]
    kept_for: dict[str, str | None] = {}
    for report in reports:
        lease = mine.get(report.lease_id)
        if lease is None:
            continue
        newer = newer_writer(conn, lease) if report.secret_pending else None
        if report.secret_pending:
            kept_for[lease.id] = newer
        if lease.state is LeaseState.REVOKED:
            if report.outcome == "failed" and lease.retire_reason == POST_STEP_REVOKED:
                _post_step_failed(conn, lease, report.error[:300], now)
            continue
        if report.outcome == "revoked":
            _post_step_revoked(conn, lease.id, now, kept_for=newer)
        else:
            _post_step_failed(conn, lease, report.error[:300], now)
    now_stored = {r.id: r for r in _by_ids(conn, list(mine))}
    found = [now_stored[r.lease_id] for r in reports if r.lease_id in mine]
    return Reported(found, not_found, kept_for)


# Repeated on purpose: record() calls, here and in the worker, each write their own event.
def _post_step_revoked(
    conn: Connection, lease_id: str, now: datetime, *, kept_for: str | None
) -> None:
    conn.execute(
        update(leases)
        .where(leases.c.id == lease_id, leases.c.state != LeaseState.REVOKED.value)
        .values(
            **revoked_columns(now),
            retire_requested_at=func.coalesce(
                leases.c.retire_requested_at, literal(now, tables.UTCDateTime())
            ),
            retire_reason=POST_STEP_REVOKED,
        )
    )
    record(
        conn,
        [lease_id],
        actor="post-step",
        action="revoked",
        detail="retired by the job's post step",
        now=now,
    )
    if kept_for is not None:
        record(
            conn,
            [lease_id],
            actor="post-step",
            action="secret_kept",
            detail=f"secret kept: lease {kept_for} wrote it since and is still live",
            now=now,
        )


def _post_step_failed(conn: Connection, lease: LeaseRecord, error: str, now: datetime) -> None:
    values: dict[str, object] = {"last_error": error or None, "updated_at": now}
    if lease.state is LeaseState.ACTIVE:
        values |= {
            "state": LeaseState.REVOKING.value,
            "retire_requested_at": now,
            "retire_reason": "post-step: could not retire it",
        }
    elif lease.state is LeaseState.REVOKED:  # revoked, but its secret could not be deleted
        values |= {
            "state": LeaseState.REVOKING.value,
            "retired_at": None,
            "retire_requested_at": now,
            "retire_reason": "post-step: could not delete its secret",
        }
    values["next_attempt_at"] = now  # try at once, whatever the backoff said
    conn.execute(update(leases).where(leases.c.id == lease.id).values(**values))
    record(
        conn,
        [lease.id],
        actor="post-step",
        action="queued",
        detail=f"post step could not retire it: {error or 'no reason given'}",
        now=now,
    )


# --- finding leases -------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseFilter:
    states: tuple[LeaseState, ...] = ()
    repository: str | None = None  # owner/name, or a repository id
    run_id: int | None = None
    pr_number: int | None = None
    lifetime: Lifetime | None = None
    provider: str | None = None
    lease_id: str | None = None
    limit: int = 100


def find(conn: Connection, where: LeaseFilter) -> list[LeaseRecord]:
    query = select(leases).order_by(leases.c.created_at.desc(), leases.c.id).limit(where.limit)
    if where.states:
        query = query.where(leases.c.state.in_([s.value for s in where.states]))
    if where.repository:
        repository_id = parse_id(where.repository)  # an id if ASCII digits within range
        if repository_id is not None:
            query = query.where(leases.c.repository_id == repository_id)
        else:
            query = query.where(func.lower(leases.c.repository) == where.repository.lower())
    if where.run_id is not None:
        query = query.where(leases.c.run_id == where.run_id)
    if where.pr_number is not None:
        query = query.where(leases.c.pr_number == where.pr_number)
    if where.lifetime is not None:
        query = query.where(leases.c.lifetime == where.lifetime.value)
    if where.provider:
        query = query.where(leases.c.provider == where.provider)
    if where.lease_id:
        query = query.where(leases.c.id == where.lease_id)
    return [LeaseRecord.from_row(row) for row in conn.execute(query).mappings()]
