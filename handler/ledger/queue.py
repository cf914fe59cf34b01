"""Retirement work in the ledger: queue leases, claim what is due, record how it went.

A queued lease is `revoking` with a `next_attempt_at`. A worker claims due leases by stamping a
claim token and a deadline on them in one statement — on PostgreSQL the rows are picked
`FOR UPDATE SKIP LOCKED`, so several workers never take the same lease; on SQLite the statement
runs under `BEGIN IMMEDIATE`, which already excludes every other writer. A worker that dies
leaves its claim to lapse at the deadline, and another worker takes the lease again. Results are
written only by the holder of the current claim.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Update,
    and_,
    bindparam,
    false,
    func,
    or_,
    select,
    true,
    update,
)

from handler.ledger import tables
from handler.ledger.driver import Cursor, DriverStatement, driver_cursor
from handler.ledger.history import record
from handler.ledger.records import WORK_STATES, LeaseRecord
from runkeys.leases import LeaseState, Lifetime

leases = tables.leases


# --- what to retire -------------------------------------------------------------------------


@dataclass(frozen=True)
class RunLeases:
    """`run` (and missed `job`) leases of a run, up to an attempt: attempt N completing means
    every earlier attempt has completed too."""

    repository_id: int
    run_id: int
    up_to_attempt: int
    installation_id: int | None = None
    lifetimes: tuple[Lifetime, ...] = (Lifetime.RUN, Lifetime.JOB)


@dataclass(frozen=True)
class PullRequestLeases:
    """`pr` leases of a pull request registered before `registered_before` (the end of the
    second it closed in): a closed delivery replayed after a reopen must not retire the leases
    of the reopened pull request."""

    repository_id: int
    number: int
    registered_before: datetime
    installation_id: int | None = None


@dataclass(frozen=True)
class RepositoryLeases:
    """Every lease of these repositories (an installation removed; an operator's command)."""

    repository_ids: tuple[int, ...]
    installation_id: int | None = None


@dataclass(frozen=True)
class InstallationLeases:
    """Every lease of an installation, and of its account's repositories where the
    installation is not recorded yet (an App is installed once per account)."""

    installation_id: int
    account_id: int | None = None


@dataclass(frozen=True)
class LeasesById:
    lease_ids: tuple[str, ...]


@dataclass(frozen=True)
class ExpiredLeases:
    now: datetime


Selection = (
    RunLeases
    | PullRequestLeases
    | RepositoryLeases
    | InstallationLeases
    | LeasesById
    | ExpiredLeases
)


# The webhook's hot path: statements are built once per form and reused with new parameters
# (building a SQLAlchemy expression costs more than the SQLite transaction that runs it), and
# run on the driver's cursor where their SQL is fixed (`handler.ledger.driver`).
Form = tuple[type, bool, bool, tuple[Lifetime, ...]]


def _form(selection: Selection) -> Form:
    """What the statement's shape depends on; every value goes in as a parameter (a run's
    lifetimes, a handful of constants, are part of the SQL: no IN list to expand per call)."""
    return (
        type(selection),
        getattr(selection, "installation_id", None) is not None,
        getattr(selection, "account_id", None) is not None,
        selection.lifetimes if isinstance(selection, RunLeases) else (),
    )


def _parameters(selection: Selection) -> dict[str, Any]:
    match selection:
        case RunLeases():
            return {
                "w_repository_id": selection.repository_id,
                "w_run_id": selection.run_id,
                "w_up_to_attempt": selection.up_to_attempt,
                "w_installation_id": selection.installation_id,
            }
        case PullRequestLeases():
            return {
                "w_repository_id": selection.repository_id,
                "w_number": selection.number,
                "w_registered_before": selection.registered_before,
                "w_installation_id": selection.installation_id,
            }
        case RepositoryLeases():
            return {
                "w_repository_ids": list(selection.repository_ids),
                "w_installation_id": selection.installation_id,
            }
        case InstallationLeases():
            return {
                "w_installation_id": selection.installation_id,
                "w_account_id": selection.account_id,
            }
        case LeasesById():
            return {"w_lease_ids": list(selection.lease_ids)}
        case ExpiredLeases():
            return {"w_now": selection.now}


def _installation(scoped: bool) -> ColumnElement[bool]:
    """A webhook of one installation never touches another installation's leases."""
    if not scoped:
        return true()
    return or_(
        leases.c.installation_id == bindparam("w_installation_id"),
        leases.c.installation_id.is_(None),
    )


def _where(form: Form) -> ColumnElement[bool]:  # noqa: PLR0911 (one case per kind)
    kind, scoped, by_account, lifetimes = form
    if kind is RunLeases:
        return and_(
            leases.c.repository_id == bindparam("w_repository_id"),
            leases.c.run_id == bindparam("w_run_id"),
            leases.c.run_attempt <= bindparam("w_up_to_attempt"),
            or_(false(), *(leases.c.lifetime == lifetime.value for lifetime in lifetimes)),
            _installation(scoped),
        )
    if kind is PullRequestLeases:
        return and_(
            leases.c.repository_id == bindparam("w_repository_id"),
            leases.c.pr_number == bindparam("w_number"),
            leases.c.lifetime == Lifetime.PR.value,
            leases.c.created_at < bindparam("w_registered_before", type_=tables.UTCDateTime()),
            _installation(scoped),
        )
    if kind is RepositoryLeases:
        return and_(
            leases.c.repository_id.in_(bindparam("w_repository_ids", expanding=True)),
            _installation(scoped),
        )
    if kind is InstallationLeases:
        installation = leases.c.installation_id == bindparam("w_installation_id")
        if not by_account:
            return installation
        unknown = leases.c.installation_id.is_(None)
        return or_(installation, and_(unknown, leases.c.owner_id == bindparam("w_account_id")))
    if kind is LeasesById:
        return leases.c.id.in_(bindparam("w_lease_ids", expanding=True))
    if kind is ExpiredLeases:
        return leases.c.expires_at <= bindparam("w_now", type_=tables.UTCDateTime())
    raise TypeError(f"not a selection of leases: {kind.__name__}")


@functools.lru_cache(maxsize=64)
def _queue_statement(form: Form, provider_only: bool) -> Update:
    now = bindparam("v_now", type_=tables.UTCDateTime())
    values: dict[str, Any] = {
        "state": LeaseState.REVOKING.value,
        "retire_requested_at": now,
        "retire_reason": bindparam("v_reason"),
        "next_attempt_at": now,
        "updated_at": now,
    }
    if provider_only:
        values["provider_only"] = True
    if form[1]:  # the installation, learned from a signed webhook
        values["installation_id"] = func.coalesce(
            leases.c.installation_id, bindparam("w_installation_id")
        )
    return (
        update(leases)
        .where(_where(form), leases.c.state == LeaseState.ACTIVE.value)
        .values(**values)
        .returning(leases.c.id)
    )


@functools.lru_cache(maxsize=64)
def _queue_on_driver(dialect: Dialect, form: Form, provider_only: bool) -> DriverStatement | None:
    """The queue's UPDATE for the driver's cursor; None for forms that list ids (their SQL
    changes with the number of ids: SQLAlchemy runs those)."""
    try:
        return DriverStatement(_queue_statement(form, provider_only), dialect)
    except TypeError:
        return None


@functools.lru_cache(maxsize=64)
def _active_on_driver(dialect: Dialect, form: Form) -> DriverStatement:
    active = leases.c.state == LeaseState.ACTIVE.value
    return DriverStatement(select(func.count()).where(_where(form), active), dialect)


def count_to_queue(cursor: Cursor, dialect: Dialect, selection: Selection) -> int:
    """How many `active` leases `queue` would move now: one indexed read, no write.
    For selections of fixed SQL only (not lists of ids)."""
    statement = _active_on_driver(dialect, _form(selection))
    ((count,),) = statement.execute(cursor, _parameters(selection))
    return int(count)


def queue(
    conn: Connection,
    selection: Selection,
    *,
    actor: str,
    reason: str,
    now: datetime,
    provider_only: bool = False,
) -> list[str]:
    """Move the selected `active` leases to `revoking`, due now. Returns their ids. With
    `provider_only`, leases already queued are switched to provider-only as well: the App can no
    longer reach their repository's secrets (they went with its access)."""
    form = _form(selection)
    parameters = _parameters(selection)
    values = {**parameters, "v_now": now, "v_reason": reason[:300]}
    on_driver = _queue_on_driver(conn.dialect, form, provider_only)
    if on_driver is not None:
        queued = [row[0] for row in on_driver.execute(driver_cursor(conn), values)]
    else:
        queued = list(conn.scalars(_queue_statement(form, provider_only), values))
    record(conn, queued, actor=actor, action="queued", detail=reason, now=now)
    if provider_only:
        conn.execute(
            update(leases)
            .where(_where(form), leases.c.state.in_([s.value for s in WORK_STATES]))
            .values(provider_only=True, updated_at=now),
            parameters,
        )
    return queued


def retry_failed_now(
    conn: Connection, lease_ids: Sequence[str], *, actor: str, reason: str, now: datetime
) -> list[str]:
    """The `failed` leases among `lease_ids`, due again now instead of at their slow retry (an
    operator who names them has fixed the cause, or wants to know). They stay `failed` until
    an attempt succeeds. Returns their ids."""
    if not lease_ids:
        return []
    retried = list(
        conn.scalars(
            update(leases)
            .where(leases.c.id.in_(list(lease_ids)), leases.c.state == LeaseState.FAILED.value)
            .values(next_attempt_at=now, updated_at=now)
            .returning(leases.c.id)
        )
    )
    record(conn, retried, actor=actor, action="queued", detail=reason, now=now)
    return retried


# --- claiming and finishing -----------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    token: str
    leases: list[LeaseRecord]


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(
        leases.c.state.in_([s.value for s in WORK_STATES]),
        leases.c.next_attempt_at <= now,
        or_(leases.c.claimed_until.is_(None), leases.c.claimed_until < now),
    )


def claim_due(conn: Connection, *, now: datetime, limit: int, hold: timedelta) -> Claim:
    """Take up to `limit` due leases for `hold`; each attempt is counted as it is claimed."""
    token = uuid.uuid4().hex
    # A CTE, materialized: PostgreSQL may rescan a plain `IN (SELECT … LIMIT n)` subquery and
    # then take more than n rows; a materialized CTE is evaluated exactly once.
    picked = (
        select(leases.c.id)
        .where(_due(now))
        .order_by(leases.c.next_attempt_at, leases.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    rows = conn.execute(
        update(leases)
        .where(leases.c.id.in_(select(picked.c.id)), _due(now))
        .values(
            claim_token=token,
            claimed_until=now + hold,
            attempts=leases.c.attempts + 1,
            updated_at=now,
        )
        .returning(*leases.c)
    ).mappings()
    claimed = sorted((LeaseRecord.from_row(r) for r in rows), key=lambda r: r.id)
    return Claim(token=token, leases=claimed)


def finish_revoked(
    conn: Connection, lease_id: str, token: str, *, now: datetime, detail: str
) -> bool:
    """Mark a claimed lease `revoked`. False when the claim was lost (lapsed and re-taken)."""
    done = conn.execute(
        update(leases)
        .where(leases.c.id == lease_id, leases.c.claim_token == token)
        .values(
            state=LeaseState.REVOKED.value,
            retired_at=now,
            claim_token=None,
            claimed_until=None,
            next_attempt_at=None,
            last_error=None,
            updated_at=now,
        )
    ).rowcount
    if done:
        record(conn, [lease_id], actor="worker", action="revoked", detail=detail, now=now)
    return bool(done)


def finish_failed(
    conn: Connection,
    lease_id: str,
    token: str,
    *,
    now: datetime,
    error: str,
    retry_at: datetime,
    give_up: bool,
) -> bool:
    """Record a failed attempt; `give_up` marks the lease `failed` (still retried, slowly)."""
    state = LeaseState.FAILED if give_up else LeaseState.REVOKING
    done = conn.execute(
        update(leases)
        .where(leases.c.id == lease_id, leases.c.claim_token == token)
        .values(
            state=state.value,
            last_error=error[:300],
            next_attempt_at=retry_at,
            claim_token=None,
            claimed_until=None,
            updated_at=now,
        )
    ).rowcount
    if done:
        action = "failed" if give_up else "attempt_failed"
        record(conn, [lease_id], actor="worker", action=action, detail=error, now=now)
    return bool(done)


def set_installation(conn: Connection, lease_id: str, installation_id: int) -> None:
    conn.execute(
        update(leases)
        .where(leases.c.id == lease_id, leases.c.installation_id.is_(None))
        .values(installation_id=installation_id)
    )


# --- what the dashboards show ---------------------------------------------------------------


def count_by_state(conn: Connection) -> dict[LeaseState, int]:
    rows = conn.execute(select(leases.c.state, func.count()).group_by(leases.c.state))
    counts = dict.fromkeys(LeaseState, 0)
    for state, count in rows:
        counts[LeaseState(state)] = int(count)
    return counts


def backlog(conn: Connection, now: datetime) -> int:
    """Leases due for an attempt now and not being worked on."""
    return int(conn.scalar(select(func.count()).select_from(leases).where(_due(now))) or 0)
