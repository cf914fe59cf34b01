"""Lease rows made in bulk, and loaded in bulk into a ledger migrated by its own code.

Rows are complete dicts of the `leases` table, with Python values as the ledger's own code
writes them (aware datetimes, a dict of params). Loading skips SQLAlchemy's statement layer for
speed (a million rows), but not its types: on SQLite every value goes through the column type's
own bind processor, on PostgreSQL through `COPY`, so the stored bytes are what
`handler.ledger` itself would have stored (checked by reading rows back as `LeaseRecord`s).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import JSON, Boolean

from handler.ledger import Ledger, tables
from runkeys.labels import label
from runkeys.leases import LeaseState, Lifetime

COLUMNS = [column.name for column in tables.leases.columns]
CHUNK = 20_000
LOAD_CACHE_KIB = 512 * 1024
SQLITE_DEFAULT_CACHE = -2000  # SQLite's default page cache: about 2 MB


def lease_row(
    *,
    repository_id: int,
    repository: str,
    run_id: int,
    issued_at: datetime,
    ttl: timedelta,
    installation_id: int | None = None,
    owner_id: int = 1,
    run_attempt: int = 1,
    pr_number: int | None = None,
    lifetime: Lifetime = Lifetime.RUN,
    provider: str = "random",
    key_name: str = "API_TOKEN",
    environment: str | None = None,
    repository_secret: bool = False,
    state: LeaseState = LeaseState.ACTIVE,
    retired_at: datetime | None = None,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """One lease as `handler.ledger.leases.register` stores it (then moved to `state`)."""
    rng = rng or random.Random()
    secret = environment is not None or repository_secret
    done = state in (LeaseState.REVOKED, LeaseState.FAILED, LeaseState.REVOKING)
    requested = (retired_at or issued_at + ttl) if done else None
    retry_at = None
    if requested is not None and state is not LeaseState.REVOKED:
        retry_at = requested + timedelta(hours=6)
    lease_id = rng.randbytes(16).hex()
    return {
        "id": lease_id,
        "label": label(lease_id, key_name),
        "installation_id": installation_id,
        "repository_id": repository_id,
        "repository": repository,
        "owner_id": owner_id,
        "run_id": run_id,
        "run_attempt": run_attempt,
        "pr_number": pr_number,
        "job_environment": None,
        "ref": f"refs/pull/{pr_number}/merge" if pr_number else "refs/heads/main",
        "sha": rng.randbytes(20).hex(),
        "event_name": "pull_request" if pr_number else "push",
        "key_name": key_name,
        "provider": provider,
        "connection": "CI_DB" if provider in ("postgres", "mysql", "redis") else None,
        "connection_target": rng.randbytes(32).hex()
        if provider in ("postgres", "mysql", "redis")
        else None,
        "reference": f"{provider}:{rng.randbytes(6).hex()}",
        "params": {"format": "hex"} if provider == "random" else {},
        "fingerprint": rng.randbytes(32).hex(),
        "secret_repository": repository if secret else None,
        "secret_name": key_name if secret else None,
        "secret_environment": environment,
        "lifetime": lifetime.value,
        "issued_at": issued_at,
        "expires_at": issued_at + ttl,
        "state": state.value,
        "retire_requested_at": requested,
        "retire_reason": "webhook workflow_run.completed" if requested else None,
        "provider_only": False,
        "attempts": 1 if done else 0,
        "next_attempt_at": retry_at,
        "last_error": "ProviderError: timed out" if state is LeaseState.FAILED else None,
        "claim_token": None,
        "claimed_until": None,
        "retired_at": retired_at if state is LeaseState.REVOKED else None,
        "reconciled_at": None,
        "created_at": issued_at,
        "updated_at": retired_at or issued_at,
    }


def sibling(row: dict[str, Any], key_name: str, rng: random.Random) -> dict[str, Any]:
    """Another lease of the same run (same everything but the key)."""
    provider = row["provider"]
    lease_id = rng.randbytes(16).hex()
    return row | {
        "id": lease_id,
        "label": label(lease_id, key_name),
        "key_name": key_name,
        "reference": f"{provider}:{rng.randbytes(6).hex()}",
        "fingerprint": rng.randbytes(32).hex(),
        "secret_name": key_name if row["secret_name"] else None,
    }


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def load(ledger: Ledger, rows: Iterable[dict[str, Any]]) -> int:
    """Insert `rows` into `leases`, committing every chunk; returns how many."""
    if ledger.dialect == "sqlite":
        return _load_sqlite(ledger, rows)
    return _load_postgres(ledger, rows)


@contextmanager
def indexes_dropped(ledger: Ledger) -> Iterator[None]:
    """Bulk loading's usual trick: the secondary indexes of `leases` dropped while loading and
    made again afterwards, from the same definitions (`handler.ledger.tables`)."""
    indexes = sorted(tables.leases.indexes, key=lambda index: str(index.name))
    with ledger.engine.begin() as conn:
        for index in indexes:
            index.drop(conn)
    try:
        yield
    finally:
        with ledger.engine.begin() as conn:
            for index in indexes:
                index.create(conn)


def _processors(ledger: Ledger) -> list[Callable[[Any], Any] | None]:
    """Each column's own bind processor (None where values go in as they are)."""
    dialect = ledger.engine.dialect
    return [column.type._cached_bind_processor(dialect) for column in tables.leases.columns]


def _sqlite_datetime(value: datetime) -> str:
    """What `UTCDateTime` stores on SQLite (checked against it on every chunk), ten times
    faster than going through SQLAlchemy's processors a million times."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _sqlite_converters(ledger: Ledger) -> list[Callable[[Any], Any] | None]:
    fast: dict[type, Callable[[Any], Any]] = {
        tables.UTCDateTime: _sqlite_datetime,
        JSON: json.dumps,
        Boolean: int,
    }
    return [fast.get(type(column.type)) for column in tables.leases.columns]


Convert = Callable[[Any], Any] | None


def _sqlite_values(
    rows: Sequence[dict[str, Any]], converters: list[Convert], processors: list[Convert]
) -> list[tuple[Any, ...]]:
    values = [
        tuple(
            row[c] if f is None or row[c] is None else f(row[c])
            for c, f in zip(COLUMNS, converters, strict=True)
        )
        for row in rows
    ]
    sample = rows[0]
    expected = tuple(
        sample[c] if p is None or sample[c] is None else p(sample[c])
        for c, p in zip(COLUMNS, processors, strict=True)
    )
    if values[0] != expected:
        raise AssertionError(f"bulk values differ from SQLAlchemy's: {values[0]} != {expected}")
    return values


def _load_sqlite(ledger: Ledger, rows: Iterable[dict[str, Any]]) -> int:
    processors, converters = _processors(ledger), _sqlite_converters(ledger)
    marks = ", ".join("?" * len(COLUMNS))
    sql = f"INSERT INTO leases ({', '.join(COLUMNS)}) VALUES ({marks})"
    total = 0
    raw = ledger.engine.raw_connection()
    cursor = raw.cursor()
    # Random lease ids make every insert land on another page of the primary key's index: a
    # big page cache while loading (then SQLite's default again, which the service uses).
    cursor.execute(f"PRAGMA cache_size=-{LOAD_CACHE_KIB}")
    try:
        for chunk in _chunks(rows, CHUNK):
            values = _sqlite_values(chunk, converters, processors)
            cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(sql, values)
            cursor.execute("COMMIT")
            total += len(values)
    finally:
        cursor.execute(f"PRAGMA cache_size={SQLITE_DEFAULT_CACHE}")
        cursor.close()
        raw.close()
    return total


def _postgres_value(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column == "params":
        return json.dumps(value)
    if isinstance(value, datetime):
        return tables.UTCDateTime().process_bind_param(value, None)  # type: ignore[arg-type]
    return value


def _load_postgres(ledger: Ledger, rows: Iterable[dict[str, Any]]) -> int:
    total = 0
    sql = f"COPY leases ({', '.join(COLUMNS)}) FROM STDIN"
    for chunk in _chunks(rows, CHUNK * 5):
        raw = ledger.engine.raw_connection()
        try:
            cursor = raw.cursor()
            with cursor.copy(sql) as copy:
                for row in chunk:
                    copy.write_row([_postgres_value(c, row[c]) for c in COLUMNS])
            raw.commit()
        finally:
            raw.close()
        total += len(chunk)
    return total


def environments_rows(rows: Sequence[dict[str, Any]], *, now: datetime) -> list[dict[str, Any]]:
    """The `environments` rows runkeys would have for these leases: one per environment a run
    created; deleted once none of its leases is live."""
    live = {LeaseState.ACTIVE.value, LeaseState.REVOKING.value}
    found: dict[tuple[int, str], dict[str, Any]] = {}
    for row in rows:
        name = row["secret_environment"]
        if name is None:
            continue
        key = (row["repository_id"], name.lower())
        entry = found.setdefault(
            key,
            {
                "repository_id": row["repository_id"],
                "name_key": name.lower(),
                "name": name,
                "repository": row["repository"],
                "state": "deleted",
                "created_at": row["created_at"],
                "deleted_at": now,
            },
        )
        if row["state"] in live:
            entry["state"], entry["deleted_at"] = "present", None
    return list(found.values())
