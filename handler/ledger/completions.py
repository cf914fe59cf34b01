"""Run completions: recorded by the webhook as one row, applied by the worker, which queues the
run's leases and deletes the row in one transaction.

Applying is idempotent (only `active` leases move), so two workers applying one row, or the
sweeper queueing the run first, do no harm."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, func, select

from handler.ledger import tables
from handler.ledger.queue import RunLeases, queue

completions = tables.run_completions
ACTOR = "webhook"  # the queueing is the webhook's, whoever applies it
_RECORD = completions.insert()  # built once: the webhook records one per run with leases


def record_completion(
    conn: Connection, selection: RunLeases, *, reason: str, now: datetime
) -> None:
    """Record that the run completed up to `selection.up_to_attempt`, to be applied."""
    if selection.lifetimes != RunLeases.lifetimes:
        raise ValueError("a recorded run completion retires run and job leases, no others")
    row = {
        "repository_id": selection.repository_id,
        "run_id": selection.run_id,
        "up_to_attempt": selection.up_to_attempt,
        "installation_id": selection.installation_id,
        "reason": reason[:300],
        "received_at": now,
    }
    conn.execute(_RECORD, row)


def apply_completions(conn: Connection, *, limit: int = 100) -> list[str]:
    """Queue the leases of up to `limit` recorded completions, oldest first, and delete those
    rows. The ids of the leases queued. On PostgreSQL rows another worker is applying are
    skipped (`FOR UPDATE SKIP LOCKED`); on SQLite the transaction holds the write lock."""
    picked = select(completions).order_by(completions.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        picked = picked.with_for_update(skip_locked=True)
    rows = conn.execute(picked).all()
    queued: list[str] = []
    for row in rows:
        selection = RunLeases(
            repository_id=row.repository_id,
            run_id=row.run_id,
            up_to_attempt=row.up_to_attempt,
            installation_id=row.installation_id,
        )
        queued += queue(conn, selection, actor=ACTOR, reason=row.reason, now=row.received_at)
    if rows:
        conn.execute(delete(completions).where(completions.c.id.in_([row.id for row in rows])))
    return queued


def pending(conn: Connection) -> int:
    """Completions recorded and not applied yet."""
    return int(conn.scalar(select(func.count()).select_from(completions)) or 0)
