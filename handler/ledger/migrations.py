"""Versioned migrations: ordered steps, each applied once and recorded in `schema_migrations`,
under a lock (PostgreSQL: an advisory lock; SQLite: `BEGIN IMMEDIATE`) so replicas starting
together apply each step once.

A new step is appended to `MIGRATIONS`, never edited in place (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    inspect,
    select,
)

from handler.ledger import tables
from handler.ledger.engine import is_sqlite

MIGRATION_LOCK_ID = 0x72756E6B  # "runk": the advisory lock migrations take on PostgreSQL


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Connection], None]


# `leases` and `environments` as version 1 made them, frozen: version 2 added `label`, version 4
# `connection_target` and the environments' `named_at`, `claimed` and `note`.
_V1 = MetaData()
# Repeated on purpose: tables.py as it was at version 1, frozen; a step must not follow today's.
_LEASES_V1 = Table(
    "leases",
    _V1,
    Column("id", String(64), primary_key=True),  # made by the action: a retry is idempotent
    # Where the key belongs, from the verified OIDC token (never from a request body).
    Column("installation_id", BigInteger, nullable=True),
    Column("repository_id", BigInteger, nullable=False),
    Column("repository", String(200), nullable=False),
    Column("owner_id", BigInteger, nullable=False),
    Column("run_id", BigInteger, nullable=False),
    Column("run_attempt", Integer, nullable=False),
    Column("pr_number", Integer, nullable=True),
    Column("job_environment", String(255), nullable=True),
    Column("ref", String(255), nullable=False),
    Column("sha", String(64), nullable=False),
    Column("event_name", String(64), nullable=False),
    # What the key is and where it went.
    Column("key_name", String(255), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("connection", String(64), nullable=True),
    Column("reference", String(500), nullable=False),
    Column("params", JSON, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("secret_repository", String(200), nullable=True),
    Column("secret_name", String(255), nullable=True),
    Column("secret_environment", String(255), nullable=True),
    Column("lifetime", String(8), nullable=False),
    Column("issued_at", tables.UTCDateTime, nullable=False),
    Column("expires_at", tables.UTCDateTime, nullable=False),
    # Retirement: state machine active → revoking → revoked | failed.
    Column("state", String(16), nullable=False),
    Column("retire_requested_at", tables.UTCDateTime, nullable=True),
    Column("retire_reason", String(300), nullable=True),
    Column("provider_only", Boolean, nullable=False, default=False),  # the App lost access
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", tables.UTCDateTime, nullable=True),
    Column("last_error", String(300), nullable=True),
    Column("claim_token", String(32), nullable=True),
    Column("claimed_until", tables.UTCDateTime, nullable=True),
    Column("retired_at", tables.UTCDateTime, nullable=True),
    Column("reconciled_at", tables.UTCDateTime, nullable=True),
    Column("created_at", tables.UTCDateTime, nullable=False),
    Column("updated_at", tables.UTCDateTime, nullable=False),
)
Index("ix_leases_due", _LEASES_V1.c.state, _LEASES_V1.c.next_attempt_at)
Index("ix_leases_run", _LEASES_V1.c.repository_id, _LEASES_V1.c.run_id, _LEASES_V1.c.run_attempt)
Index("ix_leases_pr", _LEASES_V1.c.repository_id, _LEASES_V1.c.pr_number)
Index("ix_leases_expiry", _LEASES_V1.c.state, _LEASES_V1.c.expires_at)
Index("ix_leases_environment", _LEASES_V1.c.repository_id, _LEASES_V1.c.secret_environment)


Table(
    "environments",
    _V1,
    Column("repository_id", BigInteger, primary_key=True),
    Column("name_key", String(255), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("repository", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", tables.UTCDateTime, nullable=False),
    Column("deleted_at", tables.UTCDateTime, nullable=True),
)


def _initial(conn: Connection) -> None:
    _V1.create_all(conn)
    tables.metadata.create_all(
        conn, tables=[tables.lease_events, tables.deliveries, tables.token_ids]
    )


def _lease_labels(conn: Connection) -> None:
    """Each lease's label, unique: no two leases name one credential. Older rows keep none
    (NULLs do not collide on either engine)."""
    conn.exec_driver_sql("ALTER TABLE leases ADD COLUMN label VARCHAR(32)")
    conn.exec_driver_sql("CREATE UNIQUE INDEX ux_leases_label ON leases (label)")


def _run_completions(conn: Connection) -> None:
    """Run completions recorded by the webhook, applied by the worker."""
    tables.run_completions.create(conn)


def _checked_targets(conn: Connection) -> None:
    """What the service checks before it deletes or revokes: each lease's connection target,
    and for each environment when it was first named and whether a lease claimed it. Rows
    from before were all claimed (only claims were recorded), first named when recorded."""
    conn.exec_driver_sql("ALTER TABLE leases ADD COLUMN connection_target VARCHAR(64)")
    conn.exec_driver_sql("ALTER TABLE environments ADD COLUMN named_at TIMESTAMP")
    conn.exec_driver_sql(
        "ALTER TABLE environments ADD COLUMN claimed BOOLEAN NOT NULL DEFAULT FALSE"
    )
    conn.exec_driver_sql("ALTER TABLE environments ADD COLUMN note VARCHAR(300)")
    conn.exec_driver_sql("UPDATE environments SET named_at = created_at, claimed = TRUE")


# Version 5's tables as it made them, frozen.
_V5 = MetaData()
# Repeated on purpose: tables.py's broker tables as version 5 made them, frozen.
_BROKER_REQUESTS_V5 = Table(
    "broker_requests",
    _V5,
    Column("repository_id", BigInteger, primary_key=True),
    Column("request_id", String(64), primary_key=True),
    Column("repository", String(200), nullable=False),
    Column("run_id", BigInteger, nullable=False),
    Column("run_attempt", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("lease_ids", JSON, nullable=False),
    Column("created_at", tables.UTCDateTime, nullable=False),
    Column("updated_at", tables.UTCDateTime, nullable=False),
)
_POLICY_DECISIONS_V5 = Table(
    "policy_decisions",
    _V5,
    Column("id", tables.EventId, primary_key=True, autoincrement=True),
    Column("at", tables.UTCDateTime, nullable=False),
    Column("outcome", String(8), nullable=False),
    Column("rules", JSON, nullable=False),
    Column("repository", String(200), nullable=False),
    Column("repository_id", BigInteger, nullable=False),
    Column("ref", String(255), nullable=False),
    Column("event_name", String(64), nullable=False),
    Column("workflow", String(500), nullable=True),
    Column("job_workflow_ref", String(500), nullable=True),
    Column("run_id", BigInteger, nullable=False),
    Column("run_attempt", Integer, nullable=False),
    Column("actor", String(255), nullable=True),
    Column("destination", String(300), nullable=False),
    Column("request_id", String(64), nullable=True),
    Column("keys", JSON, nullable=False),
)
Index(
    "ix_policy_decisions_repository",
    _POLICY_DECISIONS_V5.c.repository_id,
    _POLICY_DECISIONS_V5.c.id,
)


def _broker(conn: Connection) -> None:
    """Broker mode: its requests (a retry mints once) and its policy decisions (the audit)."""
    _V5.create_all(conn)


def _secret_alerts(conn: Connection) -> None:
    """Secret scanning alerts recorded by the webhook, worked by the worker."""
    tables.secret_alerts.create(conn)


def _log_scans(conn: Connection) -> None:
    """The log scan: the fingerprints of leases' secret parts, and the scans to do."""
    tables.metadata.create_all(conn, tables=[tables.lease_parts, tables.log_scans])


def _broker_requests_by_age(conn: Connection) -> None:
    """The sweeper prunes broker requests by age: an index, not a scan each minute."""
    conn.exec_driver_sql("CREATE INDEX ix_broker_requests_created ON broker_requests (created_at)")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "leases, events, environments, seen ids", _initial),
    Migration(2, "lease labels, unique", _lease_labels),
    Migration(3, "run completions to apply", _run_completions),
    Migration(4, "connection targets; environments' first naming and claims", _checked_targets),
    Migration(5, "broker requests and policy decisions", _broker),
    Migration(6, "secret scanning alerts to work", _secret_alerts),
    Migration(7, "lease parts' fingerprints and log scans", _log_scans),
    Migration(8, "broker requests by age, for pruning", _broker_requests_by_age),
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
