"""Engines for the ledger: SQLite (a file, WAL, every transaction `BEGIN IMMEDIATE`) and
PostgreSQL through psycopg 3.

SQLite: pysqlite's own transaction handling is switched off and each transaction starts with
`BEGIN IMMEDIATE`, so it holds the write lock from its first statement: a claim can never read a
row that another process is about to claim (SQLAlchemy docs, "Serializable isolation /
Savepoints / Transactional DDL" for pysqlite). The busy timeout makes writers wait, not fail.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from types import TracebackType
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
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
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
        # On the driver itself: through `exec_driver_sql` this one statement cost as much as the
        # rest of a webhook's transaction.
        connection.connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]

    return engine


def is_sqlite(engine: Engine | Connection | Any) -> bool:
    return bool(engine.dialect.name == "sqlite")


def insert_for(conn: Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    """An INSERT that knows `ON CONFLICT` on this engine (both dialects spell it the same)."""
    if is_sqlite(conn):
        return sqlite.insert(table)
    return postgresql.insert(table)


class SQLiteTurns:
    """Writers of one SQLite ledger take turns, in this process and across processes.

    Every transaction takes SQLite's write lock at BEGIN IMMEDIATE; a writer that finds it taken
    sleeps in SQLite's busy handler (1, 2, 5, 10 … 100 ms) and may lose the race again on
    waking, so under load some webhooks waited a hundred milliseconds and more. Here a thread
    lock and an exclusive `flock` on `<database>-lock` queue them instead: the kernel wakes a
    waiter the moment the lock is free. The busy timeout stays for anyone not taking turns
    (the `sqlite3` shell). The lock goes with its process if that dies. PostgreSQL: no turns.
    """

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._thread = threading.RLock()
        self._depth = threading.local()
        self._fd: int | None = None
        self._pid = 0

    @classmethod
    def of(cls, engine: Engine) -> SQLiteTurns:
        """One per database file and process, whichever `Ledger` asks: a thread in a turn may
        open another transaction on the same file (through another `Ledger`) without waiting
        for itself."""
        if not is_sqlite(engine) or engine.url.database in (None, "", ":memory:"):
            return cls(None)
        path = os.path.abspath(f"{engine.url.database}-lock")
        with _TURNS_LOCK:
            return _TURNS.setdefault((os.getpid(), path), cls(path))

    def __enter__(self) -> None:
        if self._path is None:
            return
        self._thread.acquire()
        depth = getattr(self._depth, "value", 0)
        self._depth.value = depth + 1
        if depth:
            return  # this thread holds the turn already
        try:
            if self._fd is None or os.getpid() != self._pid:  # a forked child opens its own
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._depth.value = 0
            self._thread.release()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._path is None:
            return
        self._depth.value -= 1
        if self._depth.value == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread.release()


_TURNS: dict[tuple[int, str], SQLiteTurns] = {}
_TURNS_LOCK = threading.Lock()
