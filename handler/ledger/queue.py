"""Retirement work in the ledger: queue leases, claim what is due, record how it went.

A worker claims due leases by stamping a claim token and a deadline on them (`FOR UPDATE SKIP
LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), taken round-robin across installations and
across repositories within each, so that one installation's storm delays another's work by at
most a batch; an environment runkeys created is claimed with all its due leases, so that the
worker can delete it once instead of each secret (issue 16). A live worker extends its claim
as it works (`extend_claim`, its heartbeat); a dead worker's claim lapses at its deadline, and
only the current claim's holder writes a result."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    true,
    tuple_,
    update,
)

from handler.ledger import tables
from handler.ledger.history import REVOKED_AHEAD, record
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


def _installation(installation_id: int | None) -> ColumnElement[bool]:
    """A webhook of one installation never touches another installation's leases."""
    if installation_id is None:
        return true()
    return or_(leases.c.installation_id == installation_id, leases.c.installation_id.is_(None))


def _where(selection: Selection) -> ColumnElement[bool]:  # noqa: PLR0911 (one case per kind)
    match selection:
        case RunLeases():
            return and_(
                leases.c.repository_id == selection.repository_id,
                leases.c.run_id == selection.run_id,
                leases.c.run_attempt <= selection.up_to_attempt,
                leases.c.lifetime.in_([lifetime.value for lifetime in selection.lifetimes]),
                _installation(selection.installation_id),
            )
        case PullRequestLeases():
            return and_(
                leases.c.repository_id == selection.repository_id,
                leases.c.pr_number == selection.number,
                leases.c.lifetime == Lifetime.PR.value,
                leases.c.created_at < selection.registered_before,
                _installation(selection.installation_id),
            )
        case RepositoryLeases():
            return and_(
                leases.c.repository_id.in_(selection.repository_ids),
                _installation(selection.installation_id),
            )
        case InstallationLeases():
            installation = leases.c.installation_id == selection.installation_id
            if selection.account_id is None:
                return installation
            unknown = leases.c.installation_id.is_(None)
            return or_(installation, and_(unknown, leases.c.owner_id == selection.account_id))
        case LeasesById():
            return leases.c.id.in_(selection.lease_ids)
        case ExpiredLeases():
            return leases.c.expires_at <= selection.now


# A run's completion, one installation's: the webhook's common case, so its read is built once
# and bound per delivery.
_ACTIVE_IN_RUN = select(func.count()).where(
    leases.c.repository_id == bindparam("repository_id"),
    leases.c.run_id == bindparam("run_id"),
    leases.c.run_attempt <= bindparam("up_to_attempt"),
    # Not `in_`: a list is an "expanding" parameter, rewritten into the SQL on every call.
    or_(*(leases.c.lifetime == lifetime.value for lifetime in RunLeases.lifetimes)),
    or_(
        leases.c.installation_id == bindparam("installation_id"),
        leases.c.installation_id.is_(None),
    ),
    leases.c.state == LeaseState.ACTIVE.value,
)


# The same read, also counting every lease of the run up to the attempt, whatever its lifetime
# or state: a run with any is one whose logs are scanned (`handler.ledger.logscans`).
_IN_RUN = select(
    func.count().filter(
        or_(*(leases.c.lifetime == lifetime.value for lifetime in RunLeases.lifetimes)),
        leases.c.state == LeaseState.ACTIVE.value,
    ),
    func.count(),
).where(
    leases.c.repository_id == bindparam("repository_id"),
    leases.c.run_id == bindparam("run_id"),
    leases.c.run_attempt <= bindparam("up_to_attempt"),
    or_(
        leases.c.installation_id == bindparam("installation_id"),
        leases.c.installation_id.is_(None),
    ),
)


def count_in_run(conn: Connection, selection: RunLeases) -> tuple[int, int]:
    """How many `active` leases `queue` would move now, and how many leases the run holds up
    to the attempt at all: one indexed read."""
    if selection.installation_id is None or selection.lifetimes != RunLeases.lifetimes:
        every = select(func.count()).where(
            leases.c.repository_id == selection.repository_id,
            leases.c.run_id == selection.run_id,
            leases.c.run_attempt <= selection.up_to_attempt,
            _installation(selection.installation_id),
        )
        return count_to_queue(conn, selection), int(conn.scalar(every) or 0)
    values = {
        "repository_id": selection.repository_id,
        "run_id": selection.run_id,
        "up_to_attempt": selection.up_to_attempt,
        "installation_id": selection.installation_id,
    }
    row = conn.execute(_IN_RUN, values).one()
    return int(row[0] or 0), int(row[1] or 0)


def count_to_queue(conn: Connection, selection: Selection) -> int:
    """How many `active` leases `queue` would move now: one indexed read, no write."""
    if (
        isinstance(selection, RunLeases)
        and selection.installation_id is not None
        and selection.lifetimes == RunLeases.lifetimes
    ):
        values = {
            "repository_id": selection.repository_id,
            "run_id": selection.run_id,
            "up_to_attempt": selection.up_to_attempt,
            "installation_id": selection.installation_id,
        }
        return int(conn.scalar(_ACTIVE_IN_RUN, values) or 0)
    active = leases.c.state == LeaseState.ACTIVE.value
    return int(conn.scalar(select(func.count()).where(_where(selection), active)) or 0)


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
    values: dict[str, Any] = {
        "state": LeaseState.REVOKING.value,
        "retire_requested_at": now,
        "retire_reason": reason[:300],
        "next_attempt_at": now,
        "updated_at": now,
    }
    if provider_only:
        values["provider_only"] = True
    installation_id = getattr(selection, "installation_id", None)
    if installation_id is not None:  # the installation, learned from a signed webhook
        values["installation_id"] = func.coalesce(leases.c.installation_id, installation_id)
    queued = list(
        conn.scalars(
            update(leases)
            .where(_where(selection), leases.c.state == LeaseState.ACTIVE.value)
            .values(**values)
            .returning(leases.c.id)
        )
    )
    record(conn, queued, actor=actor, action="queued", detail=reason, now=now)
    if provider_only:
        conn.execute(
            update(leases)
            .where(_where(selection), leases.c.state.in_([s.value for s in WORK_STATES]))
            .values(provider_only=True, updated_at=now)
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


# Workers whose claims may meet (on PostgreSQL) and still each fill a batch; one more finds too
# few rows unlocked, takes a smaller batch (or none) and claims again at its next turn.
CLAIMS_AT_ONCE = 4


def _not_of(installations: Collection[int]) -> ColumnElement[bool]:
    if not installations:
        return true()
    return or_(
        leases.c.installation_id.is_(None), leases.c.installation_id.not_in(sorted(installations))
    )


def _of(installations: Collection[int] | None) -> ColumnElement[bool]:
    """Only these installations' leases (when named), and none revoked ahead already: they are
    asked for to be revoked ahead of their deletion (`RevocationWorker._revoke_ahead`)."""
    if installations is None:
        return true()
    events = tables.lease_events
    ahead = exists().where(events.c.lease_id == leases.c.id, events.c.action == REVOKED_AHEAD)
    return and_(leases.c.installation_id.in_(sorted(installations)), ~ahead)


def _fair_pick(
    now: datetime,
    limit: int,
    skip: Collection[int] = (),
    only: Collection[int] | None = None,
) -> Select[str, int | None]:
    """The ids (and installations) of up to `limit` due leases in the order to work them, none
    of the installations in `skip` (and only those in `only`, when given): round k holds the
    k-th oldest lease of each repository, interleaved within an installation; then the
    installations' k-th turns interleaved, oldest first. Locked rows (another worker's claim
    in the making) are skipped."""
    by_repository = func.row_number().over(
        partition_by=(leases.c.installation_id, leases.c.repository_id),
        order_by=(leases.c.next_attempt_at, leases.c.id),
    )
    due = (
        select(leases.c.id, leases.c.installation_id, leases.c.next_attempt_at)
        .add_columns(by_repository.label("round"))
        .where(_due(now), _not_of(skip), _of(only))
        .cte("due_now")
    )
    turn = func.row_number().over(
        partition_by=due.c.installation_id,
        order_by=(due.c.round, due.c.next_attempt_at, due.c.id),
    )
    # A lease's turn is at least its round, and its place at least its turn: what lies beyond
    # the batch in either is left out before the next ranking and the join, but for spares,
    # which claims made at the same moment take past the rows the others have locked.
    reach = limit * CLAIMS_AT_ONCE
    placed = (
        select(due.c.id, due.c.next_attempt_at, turn.label("turn"))
        .where(due.c.round <= reach)
        .cte("placed")
    )
    # PostgreSQL refuses FOR UPDATE beside window functions: they rank in the CTEs, and only
    # the ledger's rows are locked here.
    return (
        select(leases.c.id, leases.c.installation_id)
        .join(placed, placed.c.id == leases.c.id)
        .where(placed.c.turn <= reach, _due(now))
        .order_by(placed.c.turn, placed.c.next_attempt_at, placed.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=leases)
    )


def _environment_key() -> ColumnElement[Any]:
    # GitHub's environment names ignore case; `environments.name_key` is lower-cased.
    return tuple_(leases.c.repository_id, func.lower(leases.c.secret_environment))


def _with_environments(
    conn: Connection, picked: Sequence[tuple[str, int | None]], now: datetime, limit: int
) -> list[str]:
    """`picked`, each lease whose secret is in an environment runkeys created brought in with
    every due lease of that environment (the worker deletes it once, its secrets with it, only
    when one claim holds them all), in the picked order. Whole environments are taken until
    the claim holds `limit` leases, past it for the last one, and past it for each
    installation's first turn (so that an environment of a storm does not push a quiet
    installation's run out of the claim); the rest of `picked` is left due."""
    environments = tables.environments
    created = (
        select(leases.c.id, leases.c.repository_id, func.lower(leases.c.secret_environment))
        .join(
            environments,
            and_(
                environments.c.repository_id == leases.c.repository_id,
                environments.c.name_key == func.lower(leases.c.secret_environment),
            ),
        )
        .where(
            leases.c.id.in_([lease_id for lease_id, _ in picked]),
            ~leases.c.provider_only,  # its secret is not the worker's to delete
            environments.c.claimed,
            environments.c.state == "present",
        )
    )
    environment_of = {row[0]: (row[1], row[2]) for row in conn.execute(created)}
    if not environment_of:
        return [lease_id for lease_id, _ in picked]
    members: dict[tuple[int, str], list[str]] = {}
    siblings = (
        select(leases.c.id, leases.c.repository_id, func.lower(leases.c.secret_environment))
        .where(
            _environment_key().in_(sorted(set(environment_of.values()))),
            ~leases.c.provider_only,
            _due(now),
        )
        .order_by(leases.c.id)
        .with_for_update(skip_locked=True, of=leases)
    )
    for lease_id, repository_id, name in conn.execute(siblings):
        members.setdefault((repository_id, name), []).append(lease_id)
    chosen: list[str] = []
    taken: set[tuple[int, str]] = set()
    turned: set[int | None] = set()  # installations whose first turn is in the claim
    for lease_id, installation in picked:
        first_turn = installation not in turned
        turned.add(installation)
        if len(chosen) >= limit and not first_turn:
            continue
        environment = environment_of.get(lease_id)
        if environment is None:
            chosen.append(lease_id)
        elif environment not in taken:
            taken.add(environment)
            chosen += members.get(environment, [lease_id])
    return chosen


def claim_due(
    conn: Connection,
    *,
    now: datetime,
    limit: int,
    hold: timedelta,
    skip_installations: Collection[int] = (),
    only_installations: Collection[int] | None = None,
) -> Claim:
    """Take about `limit` due leases for `hold`, in the order to work them (`_fair_pick`), an
    environment runkeys created with all its due leases (`_with_environments`), none of the
    installations in `skip_installations` (only those in `only_installations`, when given,
    and then none already revoked ahead); each attempt is counted as it is claimed."""
    token = uuid.uuid4().hex
    pick = _fair_pick(now, limit, skip_installations, only_installations)
    picked = [(row[0], row[1]) for row in conn.execute(pick)]
    if not picked:
        return Claim(token=token, leases=[])
    ids = _with_environments(conn, picked, now, limit)
    rows = conn.execute(
        update(leases)
        .where(leases.c.id.in_(ids), _due(now))
        .values(
            claim_token=token,
            claimed_until=now + hold,
            attempts=leases.c.attempts + 1,
            updated_at=now,
        )
        .returning(*leases.c)
    ).mappings()
    claimed = {r["id"]: LeaseRecord.from_row(r) for r in rows}
    return Claim(token=token, leases=[claimed[i] for i in ids if i in claimed])


def extend_claim(
    conn: Connection, token: str, lease_ids: Iterable[str], *, now: datetime, hold: timedelta
) -> set[str]:
    """Push the deadline of the claim's unfinished leases among `lease_ids` to `now + hold`
    (the heartbeat of a live worker; by id, so the primary key finds them); the ids still held.
    A finished lease has no claim left to extend; a lapsed one is still this claim's until
    another worker takes it (its token then differs)."""
    ids = list(lease_ids)
    if not ids:
        return set()
    return set(
        conn.scalars(
            update(leases)
            .where(leases.c.id.in_(ids), leases.c.claim_token == token)
            .values(claimed_until=now + hold)
            .returning(leases.c.id)
        )
    )


def revoked_columns(now: datetime) -> dict[str, Any]:
    """A lease revoked at `now`, by the worker or the post step: no claim, nothing left to try."""
    return {
        "state": LeaseState.REVOKED.value,
        "retired_at": now,
        "claim_token": None,
        "claimed_until": None,
        "next_attempt_at": None,
        "last_error": None,
        "updated_at": now,
    }


def finish_revoked(
    conn: Connection, lease_id: str, token: str, *, now: datetime, detail: str
) -> bool:
    """Mark a claimed lease `revoked`. False when the claim was lost (lapsed and re-taken)."""
    done = conn.execute(
        update(leases)
        .where(leases.c.id == lease_id, leases.c.claim_token == token)
        .values(**revoked_columns(now))
    ).rowcount
    if done:
        record(conn, [lease_id], actor="worker", action="revoked", detail=detail, now=now)
    return bool(done)


def release_revoked_ahead(
    conn: Connection,
    lease_ids: Sequence[str],
    token: str,
    *,
    now: datetime,
    detail: str,
) -> list[str]:
    """Record the claimed leases among `lease_ids` revoked at their providers while their
    secrets' deletion waits for GitHub's budget: still `revoking` and due, their place in line
    kept (the deletion is still to do, by whichever worker claims them next, also after a
    crash), the claim let go, and not counted as an attempt (nothing was asked of GitHub)."""
    if not lease_ids:
        return []
    released = list(
        conn.scalars(
            update(leases)
            .where(leases.c.id.in_(list(lease_ids)), leases.c.claim_token == token)
            .values(
                claim_token=None,
                claimed_until=None,
                attempts=leases.c.attempts - 1,
                updated_at=now,
            )
            .returning(leases.c.id)
        )
    )
    record(conn, released, actor="worker", action=REVOKED_AHEAD, detail=detail, now=now)
    return released


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
