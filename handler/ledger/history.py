"""The append-only event log: who did what to a lease, and why."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, Dialect, bindparam, select

from handler.ledger import tables
from handler.ledger.driver import DriverStatement, driver_cursor
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
    rows = [
        {"lease_id": lease_id, "at": now, "actor": actor, "action": action, "detail": detail}
        for lease_id in lease_ids
    ]
    if rows:
        for row in rows:
            row["detail"] = str(row["detail"])[:DETAIL_LIMIT]
        _insert_event(conn.dialect).execute_many(driver_cursor(conn), rows)


@functools.lru_cache(maxsize=16)  # one per engine's dialect
def _insert_event(dialect: Dialect) -> DriverStatement:
    """Run for every lease a webhook queues: on the driver's cursor."""
    columns = ("lease_id", "at", "actor", "action", "detail")
    insert = tables.lease_events.insert().values({name: bindparam(name) for name in columns})
    return DriverStatement(insert, dialect)


def history(conn: Connection, lease_id: str) -> list[LeaseEvent]:
    query = (
        select(tables.lease_events)
        .where(tables.lease_events.c.lease_id == lease_id)
        .order_by(tables.lease_events.c.id)
    )
    return [LeaseEvent.from_row(row) for row in conn.execute(query).mappings()]
