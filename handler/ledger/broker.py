"""Broker mode's rows: each `POST /v1/keys` request by (repository, request id), so a retry never
mints twice, and each policy decision (the audit). Neither holds a key's value. Requests are
pruned once no retry and no `max_keys` count can need them; decisions are kept."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, func, select, update

from handler.ledger import tables
from handler.ledger.engine import insert_for
from handler.policy import DecisionRecord
from runkeys.oidc import RunIdentity

requests = tables.broker_requests
decisions = tables.policy_decisions

# A request id repeats only within its job (5 days at most, self-hosted), but `max_keys` counts
# the run attempt's grants, and a run lasts 35 days at most (waits and approvals included), so
# a row outlives its run attempt by a day: https://docs.github.com/actions/reference/limits
REQUEST_RETENTION = timedelta(days=36)


@dataclass(frozen=True)
class EarlierRequest:
    """A request id this repository sent before: what it became."""

    state: str  # minting (still running), granted
    run_id: int
    run_attempt: int
    lease_ids: tuple[str, ...]


def claim_request(
    conn: Connection, identity: RunIdentity, request_id: str, *, now: datetime
) -> EarlierRequest | None:
    """Take `request_id` for this repository; None when taken now, else what it was. The claim
    is known by its time, `now`: granting or releasing it later names it by that."""
    inserted = conn.execute(
        insert_for(conn, requests)
        .values(
            repository_id=identity.repository_id,
            request_id=request_id,
            repository=identity.repository,
            run_id=identity.run_id,
            run_attempt=identity.run_attempt,
            state="minting",
            lease_ids=[],
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
        .returning(requests.c.request_id)
    ).first()
    if inserted is not None:
        return None
    row = conn.execute(
        select(requests).where(
            requests.c.repository_id == identity.repository_id,
            requests.c.request_id == request_id,
        )
    ).one()
    return EarlierRequest(row.state, row.run_id, row.run_attempt, tuple(row.lease_ids))


def request_of(conn: Connection, repository_id: int, request_id: str) -> EarlierRequest | None:
    """The request `request_id` of this repository (by id), if it has one."""
    row = conn.execute(
        select(requests).where(
            requests.c.repository_id == repository_id, requests.c.request_id == request_id
        )
    ).first()
    if row is None:
        return None
    return EarlierRequest(row.state, row.run_id, row.run_attempt, tuple(row.lease_ids))


def _claim(identity: RunIdentity, request_id: str, claimed_at: datetime) -> ColumnElement[bool]:
    """This request's own claim: once a row is pruned, its id may be a retry's, claimed later."""
    return and_(
        requests.c.repository_id == identity.repository_id,
        requests.c.request_id == request_id,
        requests.c.created_at == claimed_at,
    )


def grant_request(
    conn: Connection,
    identity: RunIdentity,
    request_id: str,
    lease_ids: Sequence[str],
    *,
    claimed_at: datetime,
    now: datetime,
) -> bool:
    """The request's keys are minted and registered: a retry is told their lease ids. False
    when its claim is gone (pruned): the caller must then grant nothing."""
    granted = conn.execute(
        update(requests)
        .where(_claim(identity, request_id, claimed_at))
        .values(state="granted", lease_ids=list(lease_ids), updated_at=now)
        .returning(requests.c.request_id)
    ).first()
    return granted is not None


def granted_keys(conn: Connection, identity: RunIdentity) -> int:
    """How many keys the broker granted this run attempt so far."""
    rows = conn.execute(
        select(requests.c.lease_ids).where(
            requests.c.repository_id == identity.repository_id,
            requests.c.run_id == identity.run_id,
            requests.c.run_attempt == identity.run_attempt,
            requests.c.state == "granted",
        )
    )
    return sum(len(row.lease_ids) for row in rows)


def release_request(
    conn: Connection, identity: RunIdentity, request_id: str, *, claimed_at: datetime
) -> None:
    """The request was refused or rolled back whole: the same id may be tried again."""
    conn.execute(delete(requests).where(_claim(identity, request_id, claimed_at)))


def prune_requests(conn: Connection, *, now: datetime) -> int:
    """Forget requests older than REQUEST_RETENTION, granted or not: no retry can come and
    no `max_keys` count can need them. One still being served cannot be granted afterwards
    (`grant_request`), so a retry finding its id free is the only one to mint."""
    old = delete(requests).where(requests.c.created_at < now - REQUEST_RETENTION)
    return int(conn.execute(old).rowcount)


# Repeated on purpose: one column per DecisionRecord field; a row is declared, not generated.
def record_decision(
    conn: Connection,
    made: DecisionRecord,
    *,
    repository_id: int,
    request_id: str | None,
    now: datetime,
) -> None:
    conn.execute(
        decisions.insert().values(
            at=now,
            outcome=made.outcome,
            rules=list(made.rules),
            repository=made.repository,
            repository_id=repository_id,
            ref=made.ref,
            event_name=made.event_name,
            workflow=made.workflow,
            job_workflow_ref=made.job_workflow_ref,
            run_id=int(made.run_id),
            run_attempt=int(made.run_attempt),
            actor=made.actor,
            destination=made.destination,
            request_id=request_id,
            keys=[_key(k) for k in made.keys],
        )
    )


def _key(key: Any) -> dict[str, Any]:
    return {
        "name": key.name,
        "provider": key.provider,
        "connection": key.connection,
        "outcome": key.outcome,
        "rule": key.rule,
        "field": key.field,
        "reason": key.reason,
    }


def list_decisions(
    conn: Connection, *, repository: str | None = None, denied: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest decisions first; `repository` by owner/name (any case) or id."""
    query = select(decisions).order_by(decisions.c.id.desc()).limit(limit)
    if repository is not None:
        if repository.isascii() and repository.isdigit():
            query = query.where(decisions.c.repository_id == int(repository))
        else:
            query = query.where(func.lower(decisions.c.repository) == repository.lower())
    if denied:
        query = query.where(decisions.c.outcome == "deny")
    return [
        {
            "id": row.id,
            "at": row.at.isoformat(),
            "outcome": row.outcome,
            "rules": list(row.rules),
            "repository": row.repository,
            "ref": row.ref,
            "event_name": row.event_name,
            "workflow": row.workflow,
            "job_workflow_ref": row.job_workflow_ref,
            "run_id": row.run_id,
            "run_attempt": row.run_attempt,
            "actor": row.actor,
            "destination": row.destination,
            "request_id": row.request_id,
            "keys": list(row.keys),
        }
        for row in conn.execute(query)
    ]
