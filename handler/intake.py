"""A verified delivery applied to the ledger: recorded once (redeliveries are recognised by
`X-GitHub-Delivery`), its retirements queued, in one transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from handler.events import Decision, Outcome, Retirement
from handler.ledger import tables
from handler.ledger.environments import mark_repositories_unreachable
from handler.ledger.queue import InstallationLeases, RepositoryLeases, queue
from handler.ledger.seen import first_delivery
from handler.webhooks import Delivery


def apply_delivery(
    conn: Connection, delivery: Delivery, decision: Decision, *, now: datetime
) -> tuple[Outcome, list[str]]:
    """The outcome (`duplicate` for a redelivery) and the ids of the leases queued."""
    if not first_delivery(
        conn,
        delivery.delivery_id,
        event=delivery.event,
        action=delivery.action,
        outcome=decision.outcome.value,
        now=now,
    ):
        return Outcome.DUPLICATE, []
    reason = f"webhook {delivery.name} delivery {delivery.delivery_id}"
    queued: list[str] = []
    for retirement in decision.retirements:
        queued += queue(
            conn,
            retirement.selection,
            actor="webhook",
            reason=reason,
            now=now,
            provider_only=retirement.provider_only,
        )
        if retirement.provider_only:
            _environments_out_of_reach(conn, retirement, now)
    return decision.outcome, queued


def _environments_out_of_reach(conn: Connection, retirement: Retirement, now: datetime) -> None:
    """The App lost these repositories: their environments can no longer be deleted by us."""
    selection = retirement.selection
    if isinstance(selection, RepositoryLeases):
        repository_ids = selection.repository_ids
    elif isinstance(selection, InstallationLeases):
        leases = tables.leases
        repository_ids = tuple(
            conn.scalars(
                select(leases.c.repository_id)
                .where(leases.c.installation_id == selection.installation_id)
                .distinct()
            )
        )
    else:
        return
    if repository_ids:
        mark_repositories_unreachable(conn, repository_ids, now=now)
