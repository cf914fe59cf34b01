"""Statements run on the driver's cursor (`handler.ledger.driver`), on both engines: they write
exactly what SQLAlchemy writes, stay inside the caller's transaction, and a statement whose SQL
would change per call is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, select

from handler.ledger import Ledger, tables
from handler.ledger.driver import DriverStatement, driver_cursor

AT = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
COLUMNS = ("delivery_id", "event", "action", "outcome", "received_at")


def _insert(ledger: Ledger) -> DriverStatement:
    values: dict[str, Any] = {name: bindparam(name) for name in COLUMNS}
    return DriverStatement(insert(tables.deliveries).values(values), ledger.engine.dialect)


def _row(delivery_id: str, at: datetime) -> dict[str, object]:
    return {
        "delivery_id": delivery_id,
        "event": "ping",
        "action": None,
        "outcome": "pong",
        "received_at": at,
    }


@pytest.mark.parametrize("at", [AT, AT.replace(microsecond=0)], ids=["micro", "whole-second"])
def test_rows_written_on_the_driver_are_stored_as_sqlalchemy_stores_them(
    ledger: Ledger, at: datetime
) -> None:
    """The column types' own conversions: an aware datetime in another zone is stored as UTC,
    in the very form SQLAlchemy gives it (SQLite: the same text, so that times sort), not as
    the driver's default adapter would."""
    elsewhere = at.astimezone(timezone(timedelta(hours=-5)))
    with ledger.begin() as conn:
        _insert(ledger).execute(driver_cursor(conn), _row("driver", elsewhere))
        conn.execute(insert(tables.deliveries), _row("core", at))
    with ledger.begin() as conn:
        raw = conn.exec_driver_sql("SELECT delivery_id, received_at FROM deliveries")
        stored: dict[str, Any] = {row[0]: row[1] for row in raw}
        columns = (tables.deliveries.c.delivery_id, tables.deliveries.c.received_at)
        read = {row[0]: row[1] for row in conn.execute(select(*columns))}
    assert stored["driver"] == stored["core"]
    assert read == {"driver": at, "core": at}


def test_many_rows_at_once_and_returning(ledger: Ledger) -> None:
    with ledger.begin() as conn:
        _insert(ledger).execute_many(driver_cursor(conn), [_row(f"d-{i}", AT) for i in range(3)])
        values: dict[str, Any] = {name: bindparam(name) for name in COLUMNS}
        returning = insert(tables.deliveries).values(values).returning(tables.deliveries.c.event)
        rows = DriverStatement(returning, ledger.engine.dialect).execute(
            driver_cursor(conn), _row("d-3", AT)
        )
    assert [tuple(r) for r in rows] == [("ping",)]
    with ledger.begin() as conn:
        ids = conn.scalars(select(tables.deliveries.c.delivery_id).order_by("delivery_id"))
        assert list(ids) == ["d-0", "d-1", "d-2", "d-3"]


def test_the_callers_transaction_rolls_it_back(ledger: Ledger) -> None:
    def abandoned() -> None:
        with ledger.begin() as conn:
            _insert(ledger).execute(driver_cursor(conn), _row("rolled-back", AT))
            raise RuntimeError("abandoned")

    with pytest.raises(RuntimeError, match="abandoned"):
        abandoned()
    with ledger.begin() as conn:
        assert conn.scalar(select(tables.deliveries.c.delivery_id)) is None


def test_a_missing_value_is_an_error_not_a_null(ledger: Ledger) -> None:
    row = _row("incomplete", AT)
    del row["outcome"]
    with ledger.begin() as conn, pytest.raises(ValueError, match="'outcome'"):
        _insert(ledger).execute(driver_cursor(conn), row)


def test_sql_that_changes_per_call_is_refused(ledger: Ledger) -> None:
    listed = select(tables.leases.c.id).where(
        tables.leases.c.id.in_(bindparam("ids", expanding=True))
    )
    update = tables.leases.update().where(tables.leases.c.id.in_(listed)).values(attempts=1)
    with pytest.raises(TypeError, match="cannot expand"):
        DriverStatement(update, ledger.engine.dialect)
