"""A verified delivery applied to the ledger, in one transaction.

A run's completion is idempotent and taken every time it arrives (a run with leases is recorded
as one row for the worker, `handler.ledger.completions`); a closed pull request or an
installation event or a secret scanning alert is recorded, so its redelivery is answered
`duplicate`; an alert is one row for the worker (`handler.ledger.alerts`). Why:
docs/service.md#security-model ("Webhooks")."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from handler.events import Decision, Outcome, Retirement
from handler.ledger import Ledger, tables
from handler.ledger.alerts import record_alert
from handler.ledger.completions import record_completion
from handler.ledger.environments import mark_repositories_unreachable
from handler.ledger.logscans import queue_scan
from handler.ledger.queue import (
    InstallationLeases,
    RepositoryLeases,
    RunLeases,
    count_in_run,
    queue,
)
from handler.ledger.seen import first_delivery
from handler.webhooks import Delivery


def apply_delivery(
    ledger: Ledger, delivery: Delivery, decision: Decision, *, now: datetime
) -> tuple[Outcome, int]:
    """The outcome (`duplicate` for a recorded delivery's redelivery) and how much work it
    queued: the leases it retires (queued now, or for a run's completion, when the worker
    applies it), and the alerts the worker is to look at."""
    if not decision.retirements and not decision.alerts:
        return decision.outcome, 0
    if _idempotent(decision):
        active = 0
        with ledger.begin() as conn:
            for retirement in decision.retirements:
                selection = retirement.selection
                assert isinstance(selection, RunLeases)  # _idempotent says so
                live, held = count_in_run(conn, selection)
                active += live
                if live:
                    record_completion(conn, selection, reason=_reason(delivery), now=now)
                if held:  # every run with leases, even all retired: a dead key in a log leaked
                    queue_scan(
                        conn,
                        repository_id=selection.repository_id,
                        run_id=selection.run_id,
                        run_attempt=selection.up_to_attempt,
                        installation_id=selection.installation_id,
                        now=now,
                    )
        return decision.outcome, active
    with ledger.begin() as conn:
        if not first_delivery(
            conn,
            delivery.delivery_id,
            event=delivery.event,
            action=delivery.action,
            outcome=decision.outcome.value,
            now=now,
        ):
            return Outcome.DUPLICATE, 0
        for alert in decision.alerts:
            record_alert(conn, alert, reason=_reason(delivery), now=now)
        return decision.outcome, len(_queue_all(conn, delivery, decision, now)) + len(
            decision.alerts
        )


def _idempotent(decision: Decision) -> bool:
    """Whether applying the decision again later can only do what applying it now does."""
    return not decision.alerts and all(
        isinstance(r.selection, RunLeases) and not r.provider_only for r in decision.retirements
    )


def _reason(delivery: Delivery) -> str:
    return f"webhook {delivery.name} delivery {delivery.delivery_id}"


def _queue_all(
    conn: Connection, delivery: Delivery, decision: Decision, now: datetime
) -> list[str]:
    reason = _reason(delivery)
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
    return queued


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
