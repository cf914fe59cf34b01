"""Versioned migrations: ordered steps, each applied once and recorded in `schema_migrations`.

Every process runs `migrate` at start; the steps run inside one transaction that first takes a
lock (PostgreSQL: an advisory lock; SQLite: `BEGIN IMMEDIATE`), so replicas starting together
apply each step exactly once. A new step is appended to `MIGRATIONS`, never edited in place.
Version 1 creates the tables as `tables.py` defines them; when a later step changes a table,
freeze that table's version-1 definition here first (the test that compares the migrated schema
with `tables.metadata` on both engines catches a step that was forgotten).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, inspect, select

from handler.ledger import tables
from handler.ledger.engine import is_sqlite

MIGRATION_LOCK_ID = 0x72756E6B  # "runk": the advisory lock migrations take on PostgreSQL


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Connection], None]


def _initial(conn: Connection) -> None:
    tables.metadata.create_all(
        conn,
        tables=[
            tables.leases,
            tables.lease_events,
            tables.environments,
            tables.deliveries,
            tables.token_ids,
        ],
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "leases, events, environments, seen ids", _initial),
)
HEAD = MIGRATIONS[-1].version


def migrate(engine: Engine, *, now: datetime | None = None) -> list[int]:
    """Apply the steps this database lacks; returns the versions applied."""
    applied: list[int] = []
    with engine.begin() as conn:
        if not is_sqlite(conn):
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        tables.schema_migrations.create(conn, checkfirst=True)
        done = set(conn.scalars(select(tables.schema_migrations.c.version)))
        for step in MIGRATIONS:
            if step.version in done:
                continue
            step.apply(conn)
            conn.execute(
                tables.schema_migrations.insert().values(
                    version=step.version, name=step.name, applied_at=now or datetime.now(UTC)
                )
            )
            applied.append(step.version)
    return applied


def current_version(conn: Connection) -> int:
    """The newest version applied, 0 for an empty database."""
    if not inspect(conn).has_table(tables.schema_migrations.name):
        return 0
    versions = list(conn.scalars(select(tables.schema_migrations.c.version)))
    return max(versions, default=0)
