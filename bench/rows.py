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
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from handler.ledger import Ledger, tables
from runkeys.leases import LeaseState, Lifetime

COLUMNS = [column.name for column in tables.leases.columns]
CHUNK = 20_000


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
    rng = rng or random.Random()  # noqa: S311 (test data)
    secret = environment is not None or repository_secret
    done = state in (LeaseState.REVOKED, LeaseState.FAILED, LeaseState.REVOKING)
    requested = (retired_at or issued_at + ttl) if done else None
    return {
        "id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "installation_id": installation_id,
        "repository_id": repository_id,
        "repository": repository,
        "owner_id": owner_id,
        "run_id": run_id,
        "run_attempt": run_attempt,
        "pr_number": pr_number,
        "job_environment": None,
        "ref": f"refs/pull/{pr_number}/merge" if pr_number else "refs/heads/main",
        "sha": f"{rng.getrandbits(160):040x}",
        "event_name": "pull_request" if pr_number else "push",
        "key_name": key_name,
        "provider": provider,
        "connection": "CI_DB" if provider in ("postgres", "mysql", "redis") else None,
        "reference": f"{provider}:{rng.getrandbits(48):012x}",
        "params": {"format": "hex"} if provider == "random" else {},
        "fingerprint": f"{rng.getrandbits(256):064x}",
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
        "next_attempt_at": (requested + timedelta(hours=6)) if state is not LeaseState.REVOKED
        and done else None,
        "last_error": "ProviderError: timed out" if state is LeaseState.FAILED else None,
        "claim_token": None,
        "claimed_until": None,
        "retired_at": retired_at if state is LeaseState.REVOKED else None,
        "reconciled_at": None,
        "created_at": issued_at,
        "updated_at": retired_at or issued_at,
    }


@dataclass(frozen=True)
class Loaded:
    rows: int
    seconds: float


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def load(ledger: Ledger, rows: Iterable[dict[str, Any]]) -> int:
    """Insert `rows` into `leases`, committing every chunk; returns how many."""
    if ledger.dialect == "sqlite":
        return _load_sqlite(ledger, rows)
    return _load_postgres(ledger, rows)


def _processors(ledger: Ledger) -> list[Callable[[Any], Any] | None]:
    dialect = ledger.engine.dialect
    found: list[Callable[[Any], Any] | None] = []
    for column in tables.leases.columns:
        found.append(column.type._cached_bind_processor(dialect))  # noqa: SLF001
    return found


def _load_sqlite(ledger: Ledger, rows: Iterable[dict[str, Any]]) -> int:
    processors = _processors(ledger)
    marks = ", ".join("?" * len(COLUMNS))
    sql = f"INSERT INTO leases ({', '.join(COLUMNS)}) VALUES ({marks})"  # noqa: S608 (our names)
    total = 0
    for chunk in _chunks(rows, CHUNK):
        values = [
            tuple(
                p(row[c]) if p is not None and row[c] is not None else row[c]
                for c, p in zip(COLUMNS, processors, strict=True)
            )
            for row in chunk
        ]
        with ledger.engine.begin() as conn:
            conn.exec_driver_sql(sql, values)  # type: ignore[arg-type]
        total += len(values)
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
            with cursor.copy(sql) as copy:  # type: ignore[attr-defined]
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
