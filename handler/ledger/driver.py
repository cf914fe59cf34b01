"""Core statements run on the database driver's own cursor: the webhook's hot path.

SQLAlchemy's execution of a statement — even one it has compiled and cached — costs about
50 µs of Python (an execution context, parameter processing, a result object), more than SQLite
takes to run the statement. The few statements every webhook delivery runs are compiled here
once per dialect and then executed on the DB-API cursor of the same connection, so they stay
inside the caller's transaction. Their SQL and their parameters' conversions (the column types'
own bind processors: a UTC datetime is stored exactly as through SQLAlchemy) are SQLAlchemy's;
only the per-call machinery is skipped. Results come back as the driver's rows, unconverted,
so a statement's RETURNING columns must need no conversion (ids and strings do not).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Dialect, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase


class Cursor(Protocol):
    """The part of a DB-API 2 cursor (PEP 249) used here."""

    def execute(self, operation: Any, parameters: Any = ..., /) -> Any: ...

    def executemany(self, operation: Any, seq_of_parameters: Any, /) -> Any: ...

    def fetchall(self) -> Sequence[Any]: ...

    @property
    def description(self) -> Any: ...


Processor = Callable[[Any], Any]

# Called with (cursor, SQL, parameters, many) before a statement runs here, as SQLAlchemy's
# `before_cursor_execute` event is for its own statements: for tools that look at what the
# ledger runs (the ledger benchmark explains each statement's query plan).
BeforeExecute = Callable[[Cursor, str, Any, bool], None]
before_execute: list[BeforeExecute] = []


class DriverStatement:
    """One Core statement, compiled for one dialect, executed on a driver cursor.

    Every value that changes between calls must be a named `bindparam`; literal values in the
    statement are bound with the value they were built with. A statement whose SQL depends on
    its parameters (an expanding `IN`) cannot be compiled ahead and is refused here."""

    def __init__(self, statement: UpdateBase | Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler) or compiled.literal_execute_params:
            raise TypeError("a DriverStatement needs a statement with fixed SQL")
        if compiled.post_compile_params:
            raise TypeError("a DriverStatement cannot expand parameters (IN lists) per call")
        self.sql = compiled.string
        # qmark/numeric dialects (SQLite) take a tuple in this order; the others a mapping.
        self._order: tuple[str, ...] | None = (
            tuple(compiled.positiontup) if compiled.positiontup is not None else None
        )
        # Each parameter is a value the caller names (a `bindparam` without one) or a literal of
        # the statement, converted once here; the callers' values by the column type at each call.
        self._fixed: dict[str, Any] = {}
        self._named: list[tuple[str, str, Processor | None]] = []  # key, name in the SQL, type
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                self._named.append((bind.key, name, processor))
            else:
                value = bind.effective_value
                self._fixed[name] = value if processor is None else processor(value)

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | Mapping[str, Any]:
        """The driver's parameters for `values` (by bindparam name), converted by type."""
        bound = dict(self._fixed)
        for key, name, processor in self._named:
            try:
                value = values[key]
            except KeyError:
                raise ValueError(f"no value for the statement's parameter {key!r}") from None
            bound[name] = value if processor is None else processor(value)
        if self._order is None:
            return bound
        return tuple(bound[name] for name in self._order)

    def execute(self, cursor: Cursor, values: Mapping[str, Any]) -> Sequence[Any]:
        """Run once; the rows of its RETURNING clause, if it has one (else empty)."""
        parameters = self.parameters(values)
        for hook in before_execute:
            hook(cursor, self.sql, parameters, False)
        cursor.execute(self.sql, parameters)
        return cursor.fetchall() if cursor.description is not None else ()

    def execute_many(self, cursor: Cursor, rows: Iterable[Mapping[str, Any]]) -> None:
        """Run once per row of values, in one driver call (no RETURNING)."""
        parameters = [self.parameters(values) for values in rows]
        for hook in before_execute:
            hook(cursor, self.sql, parameters, True)
        cursor.executemany(self.sql, parameters)


def driver_cursor(conn: Connection) -> Cursor:
    """A cursor of the driver connection under `conn`: the same transaction."""
    dbapi = conn.connection.driver_connection
    if dbapi is None:
        raise RuntimeError("the ledger connection has no driver connection")
    cursor: Cursor = dbapi.cursor()
    return cursor
