"""Environments leases named: one is a candidate for deletion when a lease said the action
created it and no live lease uses it any more. Whether it is deleted is GitHub's word
(`handler.ownership`): an environment a team made by hand, or protected, is never touched."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, and_, exists, func, select, update

from handler.ledger import tables
from handler.ledger.records import LIVE_STATES

environments = tables.environments
leases = tables.leases


@dataclass(frozen=True)
class EnvironmentRecord:
    repository_id: int
    repository: str
    name: str
    state: str
    named_at: datetime | None  # None: rows of an older ledger that never said


def _in_use(retiring: Collection[str]) -> ColumnElement[bool]:
    live = [
        leases.c.repository_id == environments.c.repository_id,
        func.lower(leases.c.secret_environment) == environments.c.name_key,
        leases.c.state.in_([s.value for s in LIVE_STATES]),
    ]
    if retiring:
        live.append(leases.c.id.not_in(list(retiring)))
    return exists().where(*live)


def deletable(
    conn: Connection,
    *,
    repository_id: int | None = None,
    name: str | None = None,
    retiring: Collection[str] = (),
) -> list[EnvironmentRecord]:
    """Environments a lease claimed to have created, still there, that no live lease uses but
    those in `retiring` (leases being retired now, whose secrets may go with it)."""
    query = select(environments).where(
        environments.c.state == "present", environments.c.claimed, ~_in_use(retiring)
    )
    if repository_id is not None:
        query = query.where(environments.c.repository_id == repository_id)
    if name is not None:
        query = query.where(environments.c.name_key == name.lower())
    return [
        EnvironmentRecord(
            repository_id=row["repository_id"],
            repository=row["repository"],
            name=row["name"],
            state=row["state"],
            named_at=row["named_at"],
        )
        for row in conn.execute(query).mappings()
    ]


def mark(
    conn: Connection,
    repository_id: int,
    name: str,
    *,
    state: str,
    now: datetime,
    note: str | None = None,
) -> None:
    """`deleted`, `unreachable` (the App lost access to the repository), or `kept` (GitHub
    says it is not runkeys' to delete; `note` says why)."""
    conn.execute(
        update(environments)
        .where(
            and_(
                environments.c.repository_id == repository_id,
                environments.c.name_key == name.lower(),
                environments.c.state == "present",
            )
        )
        .values(state=state, deleted_at=None if state == "kept" else now, note=note)
    )


def mark_repositories_unreachable(
    conn: Connection, repository_ids: tuple[int, ...], *, now: datetime
) -> None:
    conn.execute(
        update(environments)
        .where(environments.c.repository_id.in_(repository_ids), environments.c.state == "present")
        .values(state="unreachable", deleted_at=now)
    )
