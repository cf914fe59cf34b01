"""The retirement backlog per installation, for `/metrics`, `runkeys status` and the sweeper's
warning: what waits, what keeps failing, and how long the oldest has waited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from handler.ledger import tables
from handler.ledger.records import WORK_STATES
from runkeys.leases import LeaseState

leases = tables.leases


@dataclass(frozen=True)
class InstallationBacklog:
    installation_id: int | None  # None: leases registered before the App was found
    waiting: int  # queued for retirement (`revoking`)
    failed: int  # gave up for now, retried slowly
    oldest_queued_at: datetime | None  # of the waiting ones

    def oldest_age(self, now: datetime) -> float:
        """Seconds the oldest waiting lease has waited (0 when none waits)."""
        if self.oldest_queued_at is None:
            return 0.0
        return max((now - self.oldest_queued_at).total_seconds(), 0.0)


def by_installation(conn: Connection) -> list[InstallationBacklog]:
    """Every installation with a lease queued or failed, in installation order."""
    rows = conn.execute(
        select(
            leases.c.installation_id,
            leases.c.state,
            func.count(),
            func.min(leases.c.retire_requested_at),
        )
        .where(leases.c.state.in_([s.value for s in WORK_STATES]))
        .group_by(leases.c.installation_id, leases.c.state)
    ).all()
    found: dict[int | None, InstallationBacklog] = {}
    for installation, state, count, oldest in rows:
        before = found.get(installation, InstallationBacklog(installation, 0, 0, None))
        if state == LeaseState.REVOKING.value:
            before = InstallationBacklog(installation, int(count), before.failed, oldest)
        else:
            before = InstallationBacklog(
                installation, before.waiting, int(count), before.oldest_queued_at
            )
        found[installation] = before
    return sorted(found.values(), key=lambda b: (b.installation_id is None, b.installation_id or 0))
