"""The lease ledger: one schema on SQLite (the embedded default) and PostgreSQL (replicas and
separate workers). `Ledger` holds the engine; the operations are functions of a connection in
the modules beside this one, so each caller chooses its transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text

from handler.ledger.engine import make_engine
from handler.ledger.migrations import HEAD, current_version, migrate


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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
        if durable and self.dialect == "sqlite":
            with self.engine.connect() as conn, _synchronous_full(conn), conn.begin():
                yield conn
            return
        with self.engine.begin() as conn:
            yield conn

    def ready(self) -> bool:
        """Reachable and migrated to the version this code needs."""
        with self.begin() as conn:
            conn.execute(text("SELECT 1"))
            return current_version(conn) >= HEAD

    def close(self) -> None:
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
