"""Log scans in the ledger: one row per run attempt that completed with leases, queued by the
webhook, claimed by a worker, retried while GitHub has no logs yet; and the fingerprints a scan
looks for (`handler.logscan`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select, update

from handler.ledger import tables
from handler.ledger.engine import insert_for
from runkeys.leases import LeaseState

scans = tables.log_scans
leases = tables.leases
parts = tables.lease_parts
QUEUED, DONE, FAILED = "queued", "done", "failed"
# Live leases of the repository from other runs a scan also looks for (a `ttl` key a scheduled
# run minted, read by this run's jobs as a repository secret): the newest this many.
MAX_OTHER_LIVE = 1000


@dataclass(frozen=True)
class LogScan:
    repository_id: int
    run_id: int
    run_attempt: int
    installation_id: int | None
    attempts: int


@dataclass(frozen=True)
class Wanted:
    """A fingerprint a scan looks for: whose it is, and which part (None: the value)."""

    lease_id: str
    key_name: str
    part: str | None
    state: str


def _run_leases(repository_id: int, run_id: int, up_to_attempt: int) -> ColumnElement[bool]:
    return and_(
        leases.c.repository_id == repository_id,
        leases.c.run_id == run_id,
        leases.c.run_attempt <= up_to_attempt,
    )


def queue_scan(
    conn: Connection,
    *,
    repository_id: int,
    run_id: int,
    run_attempt: int,
    installation_id: int | None,
    now: datetime,
) -> bool:
    """Queue a scan of the attempt's logs (the caller knows the run holds leases up to it); a
    redelivery queues nothing more. Whether one was queued now."""
    row = {
        "repository_id": repository_id,
        "run_id": run_id,
        "run_attempt": run_attempt,
        "installation_id": installation_id,
        "state": QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
        "findings": 0,
        "created_at": now,
        "updated_at": now,
    }
    inserted = conn.execute(insert_for(conn, scans).values(row).on_conflict_do_nothing())
    return bool(inserted.rowcount)


def claim_scans(conn: Connection, *, now: datetime, limit: int, hold: timedelta) -> list[LogScan]:
    """Take up to `limit` due scans for `hold` (a dead worker's claim lapses); each attempt
    is counted as it is claimed."""
    due = and_(
        scans.c.state == QUEUED,
        scans.c.next_attempt_at <= now,
        or_(scans.c.claimed_until.is_(None), scans.c.claimed_until < now),
    )
    picked = select(scans).where(due).order_by(scans.c.next_attempt_at).limit(limit)
    if conn.dialect.name == "postgresql":
        picked = picked.with_for_update(skip_locked=True)
    claimed = []
    for row in conn.execute(picked).all():
        key = _key(row.repository_id, row.run_id, row.run_attempt)
        conn.execute(
            update(scans)
            .where(key)
            .values(claimed_until=now + hold, attempts=scans.c.attempts + 1, updated_at=now)
        )
        claimed.append(
            LogScan(
                row.repository_id,
                row.run_id,
                row.run_attempt,
                row.installation_id,
                row.attempts + 1,
            )
        )
    return claimed


def _key(repository_id: int, run_id: int, run_attempt: int) -> ColumnElement[bool]:
    return and_(
        scans.c.repository_id == repository_id,
        scans.c.run_id == run_id,
        scans.c.run_attempt == run_attempt,
    )


def finish_scan(
    conn: Connection,
    scan: LogScan,
    *,
    state: str,
    note: str,
    now: datetime,
    findings: int = 0,
    retry_at: datetime | None = None,
) -> None:
    """Record how the scan went: `done`, `failed`, or `queued` again at `retry_at`."""
    conn.execute(
        update(scans)
        .where(_key(scan.repository_id, scan.run_id, scan.run_attempt))
        .values(
            state=state,
            note=note[:300],
            findings=findings,
            next_attempt_at=retry_at,
            claimed_until=None,
            updated_at=now,
        )
    )


def repository_of(conn: Connection, scan: LogScan) -> str | None:
    """The repository's name as the run's leases have it (from their verified tokens)."""
    name = conn.scalar(
        select(leases.c.repository)
        .where(_run_leases(scan.repository_id, scan.run_id, scan.run_attempt))
        .order_by(leases.c.created_at.desc())
        .limit(1)
    )
    return None if name is None else str(name)


def wanted(conn: Connection, scan: LogScan) -> dict[str, list[Wanted]]:
    """The fingerprints to look for, each with its leases: every lease of the run up to the
    attempt (whatever its state), and the repository's live leases of other runs."""
    of_run = _run_leases(scan.repository_id, scan.run_id, scan.run_attempt)
    live = select(leases.c.id).where(
        leases.c.repository_id == scan.repository_id,
        leases.c.state == LeaseState.ACTIVE.value,
        ~of_run,
    )
    live = live.order_by(leases.c.created_at.desc()).limit(MAX_OTHER_LIVE)
    ids = list(conn.scalars(select(leases.c.id).where(of_run))) + list(conn.scalars(live))
    found: dict[str, list[Wanted]] = {}
    if not ids:
        return found
    columns = (leases.c.id, leases.c.key_name, leases.c.fingerprint, leases.c.state)
    names: dict[str, tuple[str, str]] = {}
    for lease_id, key_name, digest, state in conn.execute(
        select(*columns).where(leases.c.id.in_(ids))
    ):
        names[lease_id] = (key_name, state)
        found.setdefault(digest, []).append(Wanted(lease_id, key_name, None, state))
    for lease_id, name, digest in conn.execute(
        select(parts.c.lease_id, parts.c.name, parts.c.fingerprint).where(parts.c.lease_id.in_(ids))
    ):
        key_name, state = names[lease_id]
        found.setdefault(digest, []).append(Wanted(lease_id, key_name, name, state))
    return found


def pending_scans(conn: Connection) -> int:
    """Scans queued and not finished."""
    return int(conn.scalar(select(func.count()).where(scans.c.state == QUEUED)) or 0)
