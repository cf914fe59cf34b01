"""The expiry preflight (`POST /v1/leases/check`): what the ledger says about the keys a job is
about to use, for the token's repository only.

A key is looked up two ways. By the fingerprint of the value the job holds: the lease that
value belongs to, in this repository, whatever run minted it (a stale environment secret is an
older run's). And by name within the token's run or the job's environment: the lease the job
should be holding. A value that is no lease's, or an older lease's than the one the job should
hold, is stale; a caller of another repository finds neither, and hears `unknown`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, func, or_, select

from handler.ledger import tables
from handler.ledger.records import LeaseRecord
from runkeys.leases import LeaseState
from runkeys.oidc import RunIdentity
from runkeys.preflight import Cause, KeyAnswer, KeyQuery, KeyStatus

leases = tables.leases

# The ledger's reasons as the service writes them (intake, sweeper, post step, operator), and
# any later kind by its first word: a new reason still reads as itself in `reason`.
_CAUSES = (
    (re.compile(r"^webhook workflow_run\.|^sweeper: GitHub reports run "), Cause.RUN_COMPLETED),
    (re.compile(r"^webhook pull_request\."), Cause.PULL_REQUEST_CLOSED),
    (re.compile(r"^sweeper: ttl"), Cause.TTL),
    (re.compile(r"^post[- ]step"), Cause.POST_STEP),
    (re.compile(r"^operator "), Cause.OPERATOR),
    (re.compile(r"^webhook installation"), Cause.UNINSTALLED),
    (re.compile(r"^leaked|secret.scanning", re.IGNORECASE), Cause.LEAKED),
)


def cause_of(reason: str | None) -> Cause:
    for pattern, cause in _CAUSES:
        if reason and pattern.search(reason):
            return cause
    return Cause.OTHER


def check(
    conn: Connection, identity: RunIdentity, queries: Sequence[KeyQuery], *, now: datetime
) -> list[KeyAnswer]:
    """One answer per query, in order."""
    found = _candidates(conn, identity, queries)
    return [_answer(query, found, identity, now) for query in queries]


def _candidates(
    conn: Connection, identity: RunIdentity, queries: Sequence[KeyQuery]
) -> list[LeaseRecord]:
    """The repository's leases of the named keys that hold one of the values, or belong to the
    token's run or to the job's environment: one query, bounded by the names asked about."""
    ours = [leases.c.run_id == identity.run_id]
    if identity.environment:
        # GitHub ignores case in environment names.
        ours.append(func.lower(leases.c.secret_environment) == identity.environment.lower())
    query = select(leases).where(
        leases.c.repository_id == identity.repository_id,
        leases.c.key_name.in_({q.name for q in queries}),
        or_(leases.c.fingerprint.in_({q.fingerprint for q in queries}), *ours),
    )
    return [LeaseRecord.from_row(row) for row in conn.execute(query).mappings()]


def _newest(found: Iterable[LeaseRecord]) -> LeaseRecord | None:
    return max(found, key=lambda lease: (lease.issued_at, lease.created_at), default=None)


def _answer(
    query: KeyQuery, found: Sequence[LeaseRecord], identity: RunIdentity, now: datetime
) -> KeyAnswer:
    named = [lease for lease in found if lease.key_name == query.name]
    held = _newest(lease for lease in named if lease.fingerprint == query.fingerprint)
    should = _newest(lease for lease in named if _is_ours(lease, identity))
    if held is None:
        if should is None:
            return KeyAnswer(name=query.name, status=KeyStatus.UNKNOWN)
        return _about(query.name, KeyStatus.STALE, should, now, value_known=False)
    if _retired(held) and held.run_id != identity.run_id:
        return _about(query.name, KeyStatus.STALE, held, now, value_known=True)
    if (
        should is not None
        and should.id != held.id
        and not _retired(should)
        and should.issued_at > held.issued_at
    ):
        return _about(query.name, KeyStatus.STALE, held, now, value_known=True)
    return _about(query.name, _status(held, now), held, now)


def _is_ours(lease: LeaseRecord, identity: RunIdentity) -> bool:
    if lease.run_id == identity.run_id:
        return True
    environment = lease.secret.environment if lease.secret else None
    return bool(environment and identity.environment) and (
        str(environment).lower() == str(identity.environment).lower()
    )


def _retired(lease: LeaseRecord) -> bool:
    return lease.state is not LeaseState.ACTIVE


def _status(lease: LeaseRecord, now: datetime) -> KeyStatus:
    past = lease.expires_at <= now
    if not _retired(lease):
        return KeyStatus.EXPIRED if past else KeyStatus.LIVE
    return (
        KeyStatus.EXPIRED
        if past and cause_of(lease.retire_reason) is Cause.TTL
        else (KeyStatus.RETIRED)
    )


def _about(
    name: str,
    status: KeyStatus,
    lease: LeaseRecord,
    now: datetime,
    *,
    value_known: bool | None = None,
) -> KeyAnswer:
    retired = _retired(lease)
    return KeyAnswer(
        name=name,
        status=status,
        expires_at=lease.expires_at,
        remaining_seconds=(
            int((lease.expires_at - now).total_seconds()) if status is KeyStatus.LIVE else None
        ),
        retired_at=(lease.retire_requested_at or lease.retired_at) if retired else None,
        cause=cause_of(lease.retire_reason) if retired else None,
        reason=lease.retire_reason if retired else None,
        run_id=lease.run_id,
        run_attempt=lease.run_attempt,
        value_known=value_known,
    )
