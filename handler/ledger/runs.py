"""Runs with live `run`/`job` leases, for the sweeper to ask GitHub about: a `workflow_run`
delivery can be lost, and GitHub never redelivers on its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, or_, select, update

from handler.ledger import tables
from runkeys.leases import LeaseState, Lifetime

leases = tables.leases
RUN_LIFETIMES = (Lifetime.RUN.value, Lifetime.JOB.value)


@dataclass(frozen=True)
class RunToCheck:
    repository_id: int
    repository: str
    installation_id: int | None
    run_id: int
    run_attempt: int  # the newest attempt with a live lease


def runs_to_check(
    conn: Connection, *, now: datetime, interval: timedelta, limit: int = 100
) -> list[RunToCheck]:
    """Runs with `active` run/job leases not checked within `interval`, oldest first."""
    query = (
        select(
            leases.c.repository_id,
            func.max(leases.c.repository),
            func.max(leases.c.installation_id),
            leases.c.run_id,
            func.max(leases.c.run_attempt),
        )
        .where(
            leases.c.state == LeaseState.ACTIVE.value,
            leases.c.lifetime.in_(RUN_LIFETIMES),
            or_(leases.c.reconciled_at.is_(None), leases.c.reconciled_at < now - interval),
            leases.c.created_at < now - interval / 10,  # let a fresh run get going first
        )
        .group_by(leases.c.repository_id, leases.c.run_id)
        .order_by(func.min(leases.c.created_at))
        .limit(limit)
    )
    return [RunToCheck(*row) for row in conn.execute(query)]


def mark_checked(conn: Connection, run: RunToCheck, *, now: datetime) -> None:
    conn.execute(
        update(leases)
        .where(
            leases.c.repository_id == run.repository_id,
            leases.c.run_id == run.run_id,
            leases.c.state == LeaseState.ACTIVE.value,
        )
        .values(reconciled_at=now)
    )
