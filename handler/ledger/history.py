"""The append-only event log: who did what to a lease, and why."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import Connection, select

from handler.ledger import tables
from handler.ledger.records import LeaseEvent

DETAIL_LIMIT = 500


def record(
    conn: Connection,
    lease_ids: Iterable[str],
    *,
    actor: str,
    action: str,
    detail: str,
    now: datetime,
) -> None:
    """One event per lease, in one statement. `detail` must already be free of values."""
    detail = detail[:DETAIL_LIMIT]
    rows = [
        {"lease_id": lease_id, "at": now, "actor": actor, "action": action, "detail": detail}
        for lease_id in lease_ids
    ]
    if rows:
        conn.execute(tables.lease_events.insert(), rows)


def history(conn: Connection, lease_id: str) -> list[LeaseEvent]:
    query = (
        select(tables.lease_events)
        .where(tables.lease_events.c.lease_id == lease_id)
        .order_by(tables.lease_events.c.id)
    )
    return [LeaseEvent.from_row(row) for row in conn.execute(query).mappings()]


# A key revoked at its provider ahead of its secret's deletion (the worker, while GitHub's budget
# makes the deletion wait): a revoked key stays dead, so the event says so for good.
REVOKED_AHEAD = "provider_revoked"


def revoked_ahead(conn: Connection, lease_ids: Collection[str]) -> set[str]:
    """The leases among `lease_ids` already revoked at their providers, their secrets pending."""
    if not lease_ids:
        return set()
    events = tables.lease_events
    query = select(events.c.lease_id).where(
        events.c.lease_id.in_(sorted(lease_ids)), events.c.action == REVOKED_AHEAD
    )
    return set(conn.scalars(query))
