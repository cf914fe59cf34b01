"""The lease ledger: one schema on SQLite (the embedded default) and PostgreSQL (replicas and
separate workers). `Ledger` holds the engine; the operations are functions of a connection in
the modules beside this one, so each caller chooses its transaction."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, PoolProxiedConnection, text

from handler.ledger.driver import Cursor, driver_cursor
from handler.ledger.engine import SQLiteTurns, is_sqlite, make_engine
from handler.ledger.migrations import HEAD, current_version, migrate


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._held = threading.local()
        self._turns = SQLiteTurns.of(engine)
        # A SQLite file: each thread keeps a connection (`_reader`). Not PostgreSQL (a server
        # can go away) nor an in-memory database (each connection would see another one).
        database = engine.url.database
        self._keeps_connections = is_sqlite(engine) and database not in (None, "", ":memory:")
        self._readers: list[PoolProxiedConnection] = []  # each thread's SQLite reader
        self._readers_lock = threading.Lock()

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True) -> Ledger:
        ledger = cls(make_engine(url))
        if migrate_schema:
            migrate(ledger.engine)
        return ledger

    @property
    def dialect(self) -> str:
        return str(self.engine.dialect.name)

    @contextmanager
    def begin(self, *, durable: bool = False) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises.

        `durable`: the commit must survive a power failure, not only a crash. SQLite runs with
        `synchronous=NORMAL` (in WAL mode: never corrupt, but the last commits before a power
        failure can be lost), which is right for deliveries (a lost queueing is made up for by
        the sweeper) but not for a lease registration, whose loss would leave a key nothing
        retires: those commits sync the WAL (`FULL`). PostgreSQL commits durably anyway."""
        held: Connection | None = getattr(self._held, "connection", None)
        with self._turns:
            if held is not None:
                with held.begin():
                    yield held
                return
            if durable and self.dialect == "sqlite":
                with self.engine.connect() as conn, _synchronous_full(conn), conn.begin():
                    yield conn
                return
            with self.engine.begin() as conn:
                yield conn

    @contextmanager
    def look(self) -> Iterator[Cursor]:
        """A driver cursor for reads, outside any transaction of ours and without a writer's
        turn: in WAL mode SQLite's readers run beside its writer (each statement reads one
        snapshot), and a PostgreSQL read takes no lock worth the name. On SQLite, on this
        thread's kept connection (`_reader`); PostgreSQL reads go through the pool (its
        pre-ping notices a restarted server), which ends the read when the block does."""
        if self._keeps_connections:
            yield self._reader().cursor()
            return
        connection = self.engine.raw_connection()
        try:
            yield connection.cursor()
        finally:
            connection.close()  # back to the pool, which rolls back what the read began

    @contextmanager
    def begin_on_driver(self) -> Iterator[Cursor]:
        """A short transaction on a driver cursor, for the webhook's one write (`DriverStatement`
        only): committed when the block ends, rolled back if it raises. On SQLite, on this
        thread's kept connection, in its writer's turn and under `BEGIN IMMEDIATE` like every
        other transaction — without SQLAlchemy's checkout, transaction and return, which cost
        more than the insert and its commit."""
        if not self._keeps_connections or getattr(self._held, "connection", None) is not None:
            with self.begin() as conn:
                yield driver_cursor(conn)
            return
        with self._turns:
            connection = self._reader()
            cursor = connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
                connection.commit()
            except BaseException:
                connection.rollback()  # the kept connection must not stay in a transaction
                raise

    def _reader(self) -> PoolProxiedConnection:
        """This thread's SQLite file connection, kept: the pool's checkout and its rollback on
        return cost more than the indexed read a webhook delivery makes, and a file has no
        server to go away. In autocommit (see `engine`): a read holds its snapshot only while
        its statement runs."""
        reader, pid = getattr(self._held, "reader", (None, 0))
        if reader is None or pid != os.getpid():  # a SQLite connection must not cross a fork
            reader = self.engine.raw_connection()
            reader.detach()  # out of the pool: kept by this thread, closed with the ledger
            self._held.reader = (reader, os.getpid())
            with self._readers_lock:
                self._readers.append(reader)
        return reader

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Run every transaction this thread begins in the block on one pooled connection: a
        worker's batch commits once per lease, and the pool's liveness ping per checkout would
        cost as much as the commit."""
        with self.engine.connect() as conn:
            self._held.connection = conn
            try:
                yield
            finally:
                self._held.connection = None

    def ready(self) -> bool:
        """Reachable and migrated to the version this code needs."""
        with self.begin() as conn:
            conn.execute(text("SELECT 1"))
            return current_version(conn) >= HEAD

    def close(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for reader in readers:
            reader.close()
        self.engine.dispose()


__all__ = ["Ledger"]


@contextmanager
def _synchronous_full(conn: Connection) -> Iterator[None]:
    # On the driver, before BEGIN: SQLite refuses to change the level inside a transaction.
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA synchronous=FULL")
    try:
        yield
    finally:
        driver.execute("PRAGMA synchronous=NORMAL")
