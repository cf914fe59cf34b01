"""The query plans of the statements a piece of ledger code really runs: each statement is
explained (SQLite `EXPLAIN QUERY PLAN`, PostgreSQL `EXPLAIN`) on its own cursor, with its own
parameters, just before SQLAlchemy runs it. A plan that reads a whole table is flagged."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event

from handler.ledger import Ledger

_EXPLAINED = re.compile(r"^\s*(SELECT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)
_SQLITE_SCAN = re.compile(r"\bSCAN (\w+)(?! USING)")  # `SCAN t USING … INDEX` reads an index
_POSTGRES_SCAN = re.compile(r"Seq Scan on (\w+)")


@dataclass
class Plan:
    statement: str
    plan: list[str]

    @property
    def table_scans(self) -> list[str]:
        text = "\n".join(self.plan)
        return sorted(set(_SQLITE_SCAN.findall(text)) | set(_POSTGRES_SCAN.findall(text)))


@dataclass
class Plans:
    found: list[Plan] = field(default_factory=list)

    def scans(self, table: str = "leases") -> list[Plan]:
        return [p for p in self.found if table in p.table_scans]


@contextmanager
def explaining(ledger: Ledger) -> Iterator[Plans]:
    plans = Plans()
    sqlite = ledger.dialect == "sqlite"

    def before(  # noqa: PLR0917 (SQLAlchemy's event signature)
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if executemany or not _EXPLAINED.match(statement):
            return
        prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
        cursor.execute(prefix + statement, parameters)
        rows = cursor.fetchall()
        lines = [str(row[-1]) if sqlite else str(row[0]) for row in rows]
        plans.found.append(Plan(" ".join(statement.split())[:300], lines))

    event.listen(ledger.engine, "before_cursor_execute", before)
    try:
        yield plans
    finally:
        event.remove(ledger.engine, "before_cursor_execute", before)


def explain(ledger: Ledger, work: Callable[[], object]) -> Plans:
    with explaining(ledger) as plans:
        work()
    return plans
