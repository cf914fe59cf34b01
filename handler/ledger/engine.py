"""Engines for the ledger: SQLite (a file, WAL) and PostgreSQL through psycopg 3.

On SQLite every transaction starts with `BEGIN IMMEDIATE`, so it holds the write lock from its
first statement and a claim never reads a row another process is about to claim:
https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _sqlite_engine(url: str) -> Engine:
    timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
    connect_args = {"timeout": timeout, "check_same_thread": False}
    if make_url(url).database in (None, "", ":memory:"):
        engine = create_engine(url, connect_args=connect_args)  # a database per connection
    else:
        # Every transaction writes or may: one connection per process, its threads queue for it.
        engine = create_engine(
            url, connect_args=connect_args, pool_size=1, max_overflow=0, pool_timeout=timeout
        )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # we say BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # On the driver: `exec_driver_sql` would take a BEGIN through SQLAlchemy's whole
        # statement path (its events and result), once per transaction.
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute("BEGIN IMMEDIATE")

    return engine


def is_sqlite(engine: Engine | Connection | Any) -> bool:
    return bool(engine.dialect.name == "sqlite")


def insert_for(conn: Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    """An INSERT that knows `ON CONFLICT` on this engine (both dialects spell it the same)."""
    if is_sqlite(conn):
        return sqlite.insert(table)
    return postgresql.insert(table)
