"""Secret scanning alerts in the ledger: recorded by the webhook, one row per alert of a
repository (repository and installation from the signed delivery), then claimed and worked by
the worker (`handler.leaks`): fetched from GitHub, matched to that repository's leases by
the fingerprint of their value or of a secret part, the matches retired, the alert resolved.

No row holds the alert's secret: only the alert's number and address and the leases it
matched. A redelivery, or the alert reopened, sets the row back to `pending`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from handler.ledger import tables
from handler.ledger.engine import insert_for
from runkeys.leases import LeaseState

alerts = tables.secret_alerts
leases = tables.leases
parts = tables.lease_parts


class AlertState(StrEnum):
    PENDING = "pending"  # to fetch and match
    MATCHED = "matched"  # its leases are queued: resolve the alert once they are revoked
    DONE = "done"  # resolved, or nothing of runkeys' (`outcome` says which)
    FAILED = "failed"  # fetching kept failing: retried slowly, as a failed lease is


class Outcome(StrEnum):
    RETIRED = "retired"  # live leases retired, the alert resolved as revoked
    NO_MATCH = "no_match"  # no lease of this repository has this value: the alert stays open
    RETIRED_ALREADY = "retired_already"  # its lease was retired before: the alert stays open


@dataclass(frozen=True)
class AlertCheck:
    """An alert to look at, as the signed delivery names it."""

    repository_id: int
    repository: str
    number: int
    installation_id: int | None = None


@dataclass(frozen=True)
class AlertRecord:
    repository_id: int
    number: int
    repository: str
    installation_id: int | None
    state: AlertState
    outcome: Outcome | None
    lease_ids: tuple[str, ...]
    html_url: str | None
    reason: str
    attempts: int
    last_error: str | None

    @classmethod
    def from_row(cls, row: Any) -> AlertRecord:
        return cls(
            repository_id=row.repository_id,
            number=row.number,
            repository=row.repository,
            installation_id=row.installation_id,
            state=AlertState(row.state),
            outcome=Outcome(row.outcome) if row.outcome is not None else None,
            lease_ids=tuple(row.lease_ids or ()),
            html_url=row.html_url,
            reason=row.reason,
            attempts=row.attempts,
            last_error=row.last_error,
        )


def _key(repository_id: int, number: int) -> Any:
    return and_(alerts.c.repository_id == repository_id, alerts.c.number == number)


def record_alert(conn: Connection, alert: AlertCheck, *, reason: str, now: datetime) -> None:
    """Record the alert to work, due now; one already recorded is worked again (its claim, if
    a worker holds one, is dropped: that worker's result would be of the older look)."""
    again: dict[str, Any] = {
        "repository": alert.repository,
        "installation_id": alert.installation_id,
        "state": AlertState.PENDING.value,
        "outcome": None,
        "lease_ids": [],
        "reason": reason[:300],
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": None,
        "claim_token": None,
        "claimed_until": None,
        "updated_at": now,
    }
    row = {
        **again,
        "repository_id": alert.repository_id,
        "number": alert.number,
        "html_url": None,
        "received_at": now,
    }
    statement = insert_for(conn, alerts).values(**row)
    conn.execute(
        statement.on_conflict_do_update(index_elements=["repository_id", "number"], set_=again)
    )


def _due(now: datetime, states: Sequence[AlertState]) -> Any:
    return and_(
        alerts.c.state.in_([s.value for s in states]),
        alerts.c.next_attempt_at <= now,
        or_(alerts.c.claimed_until.is_(None), alerts.c.claimed_until < now),
    )


TO_FETCH = (AlertState.PENDING, AlertState.FAILED)
TO_RESOLVE = (AlertState.MATCHED,)


def claim_alerts(
    conn: Connection,
    *,
    now: datetime,
    limit: int,
    hold: timedelta,
    states: Sequence[AlertState] = TO_FETCH,
) -> tuple[str, list[AlertRecord]]:
    """Take up to `limit` due alerts in `states` for `hold`, oldest first; the claim's token
    and the alerts. Rows another worker is claiming are skipped on PostgreSQL."""
    token = uuid.uuid4().hex
    picked = (
        select(alerts.c.repository_id, alerts.c.number)
        .where(_due(now, states))
        .order_by(alerts.c.next_attempt_at, alerts.c.repository_id, alerts.c.number)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        picked = picked.with_for_update(skip_locked=True)
    keys = conn.execute(picked).all()
    claimed: list[AlertRecord] = []
    for repository_id, number in keys:
        row = conn.execute(
            update(alerts)
            .where(_key(repository_id, number), _due(now, states))
            .values(claim_token=token, claimed_until=now + hold)
            .returning(*alerts.c)
        ).first()
        if row is not None:
            claimed.append(AlertRecord.from_row(row))
    return token, claimed


def _release(
    conn: Connection, alert: AlertRecord, token: str, now: datetime, **values: Any
) -> bool:
    done = conn.execute(
        update(alerts)
        .where(_key(alert.repository_id, alert.number), alerts.c.claim_token == token)
        .values(claim_token=None, claimed_until=None, updated_at=now, **values)
    ).rowcount
    return bool(done)


def finish_alert(
    conn: Connection,
    alert: AlertRecord,
    token: str,
    *,
    state: AlertState,
    now: datetime,
    outcome: Outcome | None = None,
    lease_ids: Sequence[str] = (),
    html_url: str | None = None,
) -> bool:
    """Record what came of a claimed alert; False when the claim was lost (redelivered)."""
    return _release(
        conn,
        alert,
        token,
        now,
        state=state.value,
        outcome=None if outcome is None else outcome.value,
        lease_ids=list(lease_ids),
        html_url=html_url if html_url is not None else alert.html_url,
        next_attempt_at=now,
        last_error=None,
    )


def retry_alert(
    conn: Connection,
    alert: AlertRecord,
    token: str,
    *,
    now: datetime,
    retry_at: datetime,
    error: str | None = None,
    give_up: bool = False,
) -> bool:
    """Try again at `retry_at`: after a failure (`error`, counted; `give_up` marks it
    `failed`, still retried), or a resolve waiting for its leases (no error, not counted)."""
    values: dict[str, Any] = {"next_attempt_at": retry_at}
    if error is not None:
        values["last_error"] = error[:300]
        values["attempts"] = alerts.c.attempts + 1
    if give_up:
        values["state"] = AlertState.FAILED.value
    return _release(conn, alert, token, now, **values)


def due_alerts(conn: Connection, *, now: datetime) -> int:
    """Alerts a worker could take now."""
    due = _due(now, (*TO_FETCH, *TO_RESOLVE))
    return int(conn.scalar(select(func.count()).select_from(alerts).where(due)) or 0)


def get_alert(conn: Connection, repository_id: int, number: int) -> AlertRecord | None:
    row = conn.execute(select(alerts).where(_key(repository_id, number))).first()
    return None if row is None else AlertRecord.from_row(row)


@dataclass(frozen=True)
class Matches:
    """The leases of the alert's repository whose value or a secret part of it is the alert's."""

    live: tuple[str, ...] = ()  # active: to retire now
    retiring: tuple[str, ...] = ()  # queued or failed already: being retired
    retired: tuple[str, ...] = ()  # revoked: nothing left to do


def matching_leases(
    conn: Connection,
    *,
    repository_id: int,
    installation_id: int | None,
    fingerprints: Sequence[str],
) -> Matches:
    """Leases of this repository only (by id, from the signed delivery), of the delivery's
    installation or none recorded, whose value's fingerprint or a secret part's (`lease_parts`:
    a database key's password) is one of `fingerprints`."""
    if not fingerprints:
        return Matches()
    prints = list(fingerprints)
    by_part = select(parts.c.lease_id).where(parts.c.fingerprint.in_(prints))
    where = [
        leases.c.repository_id == repository_id,
        or_(leases.c.fingerprint.in_(prints), leases.c.id.in_(by_part)),
    ]
    if installation_id is not None:
        where.append(
            or_(leases.c.installation_id == installation_id, leases.c.installation_id.is_(None))
        )
    rows = conn.execute(select(leases.c.id, leases.c.state).where(*where).order_by(leases.c.id))
    found: dict[str, list[str]] = {"live": [], "retiring": [], "retired": []}
    for lease_id, state in rows:
        if state == LeaseState.ACTIVE.value:
            found["live"].append(lease_id)
        elif state == LeaseState.REVOKED.value:
            found["retired"].append(lease_id)
        else:
            found["retiring"].append(lease_id)
    return Matches(*(tuple(found[k]) for k in ("live", "retiring", "retired")))


def all_revoked(conn: Connection, lease_ids: Sequence[str]) -> bool:
    """Whether every one of `lease_ids` is revoked (so the alert can be resolved)."""
    if not lease_ids:
        return True
    left = select(func.count()).where(
        leases.c.id.in_(list(lease_ids)), leases.c.state != LeaseState.REVOKED.value
    )
    return not conn.scalar(left)
