"""The ledger on both engines: migrations, the state machine, claims, the event log, the
environments runkeys created, and the ids it has seen."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import Connection, event, func, inspect, select, update
from sqlalchemy.exc import IntegrityError

from handler.ledger import Ledger, tables
from handler.ledger.alerts import AlertCheck, get_alert, record_alert
from handler.ledger.completions import apply_completions, pending, record_completion
from handler.ledger.environments import deletable, mark
from handler.ledger.history import history
from handler.ledger.leases import LabelTakenError, LeaseFilter, _row, find, get, register
from handler.ledger.migrations import HEAD, MIGRATIONS, current_version, migrate
from handler.ledger.queue import (
    ExpiredLeases,
    LeasesById,
    RunLeases,
    backlog,
    claim_due,
    count_by_state,
    count_to_queue,
    extend_claim,
    finish_failed,
    finish_revoked,
    queue,
)
from handler.ledger.seen import first_delivery, first_token_use, prune
from runkeys import labels
from runkeys.leases import LeaseState, Lifetime
from tests.service.conftest import empty, postgres_database
from tests.service.kit import identity, lease, put, stored

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AT_MICRO = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
HOLD = timedelta(minutes=5)


def _queue_all(ledger: Ledger, ids: list[str], now: datetime = NOW) -> list[str]:
    with ledger.begin() as conn:
        return queue(conn, LeasesById(tuple(ids)), actor="test", reason="test", now=now)


# --- migrations -------------------------------------------------------------------------------


def _columns(ledger: Ledger) -> dict[str, set[str]]:
    with ledger.begin() as conn:
        found = inspect(conn)
        return {t: {c["name"] for c in found.get_columns(t)} for t in tables.metadata.tables}


def _indexes(ledger: Ledger) -> dict[str, set[str]]:
    with ledger.begin() as conn:
        found = inspect(conn)
        return {t: {str(i["name"]) for i in found.get_indexes(t)} for t in tables.metadata.tables}


def test_migrations_build_the_schema_the_code_uses(ledger: Ledger) -> None:
    expected = {name: {c.name for c in t.columns} for name, t in tables.metadata.tables.items()}
    assert _columns(ledger) == expected
    indexes = {name: {str(i.name) for i in t.indexes} for name, t in tables.metadata.tables.items()}
    assert _indexes(ledger) == indexes
    with ledger.begin() as conn:
        assert current_version(conn) == HEAD
        rows = conn.execute(select(tables.schema_migrations)).mappings().all()
    assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in MIGRATIONS]
    assert ledger.ready()


def test_migrating_again_applies_nothing(ledger: Ledger) -> None:
    assert migrate(ledger.engine) == []


def test_a_fresh_database_is_at_version_zero_until_migrated(tmp_path: Path) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'fresh.sqlite3'}", migrate_schema=False)
    with ledger.begin() as conn:
        assert current_version(conn) == 0
    assert not ledger.ready()
    assert migrate(ledger.engine) == [m.version for m in MIGRATIONS]
    assert ledger.ready()
    ledger.close()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    with postgres_database() as url:
        yield url


def test_a_version_1_ledger_gains_labels_each_held_once(empty_url: str) -> None:
    """Leases registered before labels keep none (NULLs never collide); every new lease gets
    its label, and no second row can hold a label already held."""
    ledger = Ledger.open(empty_url, migrate_schema=False)
    old = [lease(), lease()]
    with ledger.begin() as conn:
        tables.schema_migrations.create(conn)
        MIGRATIONS[0].apply(conn)
        conn.execute(tables.schema_migrations.insert().values(version=1, name="v1", applied_at=NOW))
        for item in old:  # as version 1 stored them: no label column
            row = {
                k: v
                for k, v in _row(identity(), item, 5, NOW).items()
                if k not in ("label", "connection_target")
            }
            conn.execute(tables.leases.insert().values(row))
    assert migrate(ledger.engine) == [m.version for m in MIGRATIONS[1:]]
    new = lease()
    put(ledger, identity(), new, now=NOW)
    assert [stored(ledger, item.id).label for item in old] == [None, None]
    assert stored(ledger, new.id).label == new.label
    twin = {**_row(identity(), lease(), 5, NOW), "label": new.label}
    with pytest.raises(IntegrityError), ledger.begin() as conn:
        conn.execute(tables.leases.insert().values(twin))
    ledger.close()


def test_a_version_3_ledger_keeps_the_environments_it_recorded_as_claimed(empty_url: str) -> None:
    """Before version 4 only environments a lease claimed to have created were recorded: they
    stay claimed, first named when recorded. Leases keep no connection target (revoked as
    before)."""
    ledger = Ledger.open(empty_url, migrate_schema=False)
    old = lease(connection="ci_db")
    with ledger.begin() as conn:
        tables.schema_migrations.create(conn)
        for step in MIGRATIONS[:3]:
            step.apply(conn)
            conn.execute(
                tables.schema_migrations.insert().values(
                    version=step.version, name=step.name, applied_at=NOW
                )
            )
        row = {k: v for k, v in _row(identity(), old, 5, NOW).items() if k != "connection_target"}
        conn.execute(tables.leases.insert().values(row))
        conn.exec_driver_sql(
            "INSERT INTO environments (repository_id, name_key, name, repository, state, "
            "created_at) VALUES (1296269, 'ci-pr-7', 'ci-pr-7', 'octo/app', 'present', "
            "'2026-11-01 10:00:00')"
        )
    assert migrate(ledger.engine) == [m.version for m in MIGRATIONS[3:]]  # 4 on
    env = tables.environments
    with ledger.begin() as conn:
        (found,) = conn.execute(select(env.c.named_at, env.c.claimed, env.c.note)).all()
    assert tuple(found) == (datetime(2026, 11, 1, 10, 0, tzinfo=UTC), True, None)
    assert stored(ledger, old.id).connection_target is None
    ledger.close()


def test_register_refuses_a_label_another_lease_holds(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ids whose labels agree (the hash patched to stand for a 64-bit collision): the
    second registration writes nothing, and says which label was taken."""
    first, second = lease(key_name="DB"), lease(key_name="DB")
    real = labels.label
    monkeypatch.setattr(
        labels, "label", lambda i, key: "rk_0123456789abcdef_db" if key == "DB" else real(i, key)
    )
    put(ledger, identity(), first, now=NOW)
    with pytest.raises(LabelTakenError) as taken, ledger.begin() as conn:
        register(
            conn, identity(run_id=2), [lease(key_name="X"), second], installation_id=5, now=NOW
        )
    assert (taken.value.lease_id, taken.value.label) == (second.id, "rk_0123456789abcdef_db")
    with ledger.begin() as conn:
        assert len(find(conn, LeaseFilter())) == 1


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'wal.sqlite3'}")
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    ledger.close()


def test_sqlite_syncs_a_durable_transaction_and_only_that(tmp_path: Path) -> None:
    """Registrations commit with `synchronous=FULL` (a power failure must not lose a lease);
    everything else, and the same pooled connection afterwards, with NORMAL."""
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    levels = {}
    for durable in (True, False, True):
        with ledger.begin(durable=durable) as conn:
            levels[durable] = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            conn.exec_driver_sql("SELECT count(*) FROM leases")
    with ledger.engine.connect() as conn:
        after = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    ledger.close()
    assert levels == {True: 2, False: 1}  # FULL, NORMAL
    assert after == 1


def _write_lock_free(path: Path) -> bool:
    """Whether another connection can take SQLite's write lock at once."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        return "locked" not in str(exc)  # any other error fails the caller's assertion
    finally:
        other.close()  # rolls back what it began
    return True


def test_sqlite_transactions_hold_the_write_lock_from_their_first_read(tmp_path: Path) -> None:
    """Every transaction is `BEGIN IMMEDIATE`: a read at its start already keeps other writers
    out (a claim never reads a row another process is claiming), until it commits or rolls
    back; a plain `BEGIN`, or none, would let the other writer in."""
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger.open(f"sqlite:///{path}")
    with ledger.begin() as conn:
        assert conn.scalar(select(func.count()).select_from(tables.leases)) == 0
        held_while_reading = not _write_lock_free(path)
    freed_by_commit = _write_lock_free(path)
    held_again = False

    def read_then_fail() -> None:
        nonlocal held_again
        with ledger.begin() as conn:
            conn.scalar(select(func.count()).select_from(tables.leases))
            held_again = not _write_lock_free(path)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        read_then_fail()
    freed_by_rollback = _write_lock_free(path)
    ledger.close()
    assert (held_while_reading, freed_by_commit) == (True, True)
    assert (held_again, freed_by_rollback) == (True, True)


def test_replicas_starting_together_migrate_once() -> None:
    """Each process migrates at start; the advisory lock makes the second wait, then skip."""
    from concurrent.futures import ThreadPoolExecutor

    with postgres_database() as url:
        ledgers = [Ledger.open(url, migrate_schema=False) for _ in range(4)]
        together = threading.Barrier(len(ledgers), timeout=30)

        def start(ledger: Ledger) -> list[int]:
            together.wait()  # none migrates before all four are running
            return migrate(ledger.engine)

        with ThreadPoolExecutor(len(ledgers)) as pool:
            applied = list(pool.map(start, ledgers))
        assert sorted(map(len, applied)) == [0, 0, 0, len(MIGRATIONS)]
        for ledger in ledgers:
            ledger.close()


# --- the state machine --------------------------------------------------------------------------


def test_queue_moves_only_active_leases_and_logs_why(ledger: Ledger) -> None:
    ids = put(ledger, identity(), lease(), lease(), now=NOW)
    assert set(_queue_all(ledger, ids)) == set(ids)
    with ledger.begin() as conn:
        again = queue(conn, LeasesById(tuple(ids)), actor="sweeper", reason="second", now=NOW)
        record = get(conn, ids[0])
        events = history(conn, ids[0])
    assert again == []
    assert record is not None
    assert (record.state, record.retire_reason, record.next_attempt_at) == (
        LeaseState.REVOKING,
        "test",
        NOW,
    )
    assert [(e.actor, e.action, e.detail) for e in events][-1] == ("test", "queued", "test")


@pytest.mark.parametrize(("installation_id", "expected"), [(5, 3), (6, 2), (None, 4)])
def test_the_webhooks_count_of_a_runs_leases_is_what_queueing_them_moves(
    ledger: Ledger, installation_id: int | None, expected: int
) -> None:
    """`count_to_queue` (a completed run's read, built once for an installation's run) counts
    the active run and job leases of the attempt and earlier ones, of that installation or of
    none recorded; without an installation, of any. `queue` then moves exactly those."""
    attempt = identity(run_attempt=2)
    put(ledger, attempt, lease(key_name="A"), lease(key_name="B", lifetime=Lifetime.JOB))
    put(ledger, identity(run_attempt=1), lease(key_name="C"), installation_id=None)
    put(ledger, attempt, lease(key_name="G"), installation_id=6)
    put(ledger, identity(run_attempt=2, ref="refs/pull/4/merge"), lease(lifetime=Lifetime.PR))
    put(ledger, identity(run_attempt=3), lease(key_name="LATER"))
    put(ledger, identity(run_id=1), lease(key_name="OTHER_RUN"))
    (queued,) = put(ledger, attempt, lease(key_name="QUEUED"))
    with ledger.begin() as conn:
        queue(conn, LeasesById((queued,)), actor="test", reason="t", now=NOW)
    run = RunLeases(1296269, 30433642, 2, installation_id)
    with ledger.begin() as conn:
        counted = count_to_queue(conn, run)
        moved = queue(conn, run, actor="test", reason="t", now=NOW)
    assert (counted, len(moved)) == (expected, expected)


def test_a_recorded_run_completion_queues_its_runs_leases_once_when_applied(
    ledger: Ledger,
) -> None:
    """Two completions of one run (a redelivery), one of another installation: applying them
    queues the run's active run/job leases once, in the installation's scope, stamped with the
    first receipt, and leaves no row behind."""
    received = NOW - timedelta(seconds=3)
    run_lease, job_lease, pr_lease = put(
        ledger,
        identity(ref="refs/pull/4/merge"),
        lease(lifetime=Lifetime.RUN),
        lease(lifetime=Lifetime.JOB),
        lease(lifetime=Lifetime.PR),
    )
    (foreign,) = put(ledger, identity(run_id=77), lease(), installation_id=6)
    with ledger.begin() as conn:
        for at in (received, NOW):
            run = RunLeases(1296269, 30433642, 1, 5)
            record_completion(conn, run, reason="first", now=at)
        record_completion(conn, RunLeases(1296269, 77, 1, 5), reason="other", now=NOW)
    with ledger.begin() as conn:
        assert pending(conn) == 3
    with ledger.begin() as conn:
        assert sorted(apply_completions(conn)) == sorted([run_lease, job_lease])
        assert pending(conn) == 0
        assert apply_completions(conn) == []
        assert [e.at for e in history(conn, job_lease) if e.action == "queued"] == [received]
    assert stored(ledger, run_lease).retire_requested_at == received
    assert {i: stored(ledger, i).state for i in (pr_lease, foreign)} == {
        pr_lease: LeaseState.ACTIVE,
        foreign: LeaseState.ACTIVE,  # installation 6's: a webhook of 5 never touches it
    }
    only_run = RunLeases(1, 2, 1, lifetimes=(Lifetime.RUN,))
    with ledger.begin() as conn, pytest.raises(ValueError, match="run and job"):
        record_completion(conn, only_run, reason="t", now=NOW)


@pytest.mark.parametrize("at", [AT_MICRO, AT_MICRO.replace(microsecond=0)], ids=["micro", "s"])
def test_the_webhooks_writes_store_times_as_utc_and_read_them_back_aware(
    ledger: Ledger, at: datetime
) -> None:
    """A delivery's and a completion's receipt given in another zone are stored as the same
    instant in UTC, in the very form a UTC time is (SQLite: the same text, so that times sort),
    and read back as aware UTC times; the leases queued from the completion carry it."""
    elsewhere = at.astimezone(timezone(timedelta(hours=-5)))
    (lease_id,) = put(ledger, identity(run_id=88), lease(lifetime=Lifetime.RUN))
    with ledger.begin() as conn:
        assert first_delivery(conn, "zoned", event="ping", action=None, outcome="p", now=elsewhere)
        assert first_delivery(conn, "utc", event="ping", action=None, outcome="p", now=at)
        record_completion(conn, RunLeases(1296269, 88, 1), reason="r", now=elsewhere)
    with ledger.begin() as conn:
        raw = conn.exec_driver_sql("SELECT delivery_id, received_at FROM deliveries")
        stored_raw = {row[0]: row[1] for row in raw}
        columns = (tables.deliveries.c.delivery_id, tables.deliveries.c.received_at)
        read = {row[0]: row[1] for row in conn.execute(select(*columns))}
        recorded = conn.scalar(select(tables.run_completions.c.received_at))
        apply_completions(conn)
    assert stored_raw["zoned"] == stored_raw["utc"]
    assert read == {"zoned": at, "utc": at}
    assert read["zoned"].utcoffset() == timedelta(0)
    assert recorded == at
    assert stored(ledger, lease_id).retire_requested_at == at


def test_ttl_expiry_selects_what_has_expired(ledger: Ledger) -> None:
    (short,) = put(ledger, identity(), lease(ttl=timedelta(minutes=5), now=NOW), now=NOW)
    (long,) = put(ledger, identity(), lease(ttl=timedelta(hours=5), now=NOW), now=NOW)
    with ledger.begin() as conn:
        expired = queue(
            conn,
            ExpiredLeases(NOW + timedelta(minutes=6)),
            actor="sweeper",
            reason="sweeper: ttl",
            now=NOW,
        )
    assert expired == [short]
    assert long not in expired


def test_a_claim_takes_due_leases_once_until_it_lapses(ledger: Ledger) -> None:
    ids = put(ledger, identity(), *[lease() for _ in range(5)], now=NOW)
    _queue_all(ledger, ids)
    with ledger.begin() as conn:
        first = claim_due(conn, now=NOW, limit=3, hold=HOLD)
        second = claim_due(conn, now=NOW, limit=10, hold=HOLD)
        nothing = claim_due(conn, now=NOW + timedelta(minutes=1), limit=10, hold=HOLD)
        assert backlog(conn, NOW) == 0
        again = claim_due(conn, now=NOW + HOLD + timedelta(seconds=1), limit=10, hold=HOLD)
    assert len(first.leases) == 3
    assert len(second.leases) == 2
    assert not {r.id for r in first.leases} & {r.id for r in second.leases}
    assert nothing.leases == []
    assert {r.id for r in again.leases} == set(ids)  # a dead worker's claims lapsed
    assert all(r.attempts == 2 for r in again.leases if r.id in {x.id for x in first.leases})


def _leases_of(
    ledger: Ledger, repository_id: int, count: int, *, installation_id: int, queued_at: datetime
) -> list[str]:
    """`count` leases of one repository of one installation, queued at `queued_at`; their ids
    in the order a claim takes them within their repository (oldest first, then by id)."""
    name = f"octo/repo-{repository_id}"
    who = identity(name, repository_id, run_id=repository_id)
    items = [lease(repository=name, key_name=f"KEY_{i}") for i in range(count)]
    ids = put(ledger, who, *items, installation_id=installation_id, now=NOW)
    _queue_all(ledger, ids, now=queued_at)
    return sorted(ids)


def test_claims_take_installations_round_robin_and_repositories_within_each(
    ledger: Ledger,
) -> None:
    """Round k holds each repository's k-th oldest lease; an installation's turns interleave
    its repositories; the installations' turns interleave, the older lease first."""
    a = _leases_of(ledger, 1, 4, installation_id=7, queued_at=NOW)
    b = _leases_of(ledger, 2, 2, installation_id=7, queued_at=NOW + timedelta(seconds=1))
    c = _leases_of(ledger, 3, 2, installation_id=8, queued_at=NOW + timedelta(seconds=2))
    with ledger.begin() as conn:
        claim = claim_due(conn, now=NOW + timedelta(minutes=1), limit=100, hold=HOLD)
    # Turns: installation 7 goes a, b, a, b, a, a; installation 8 goes c, c.
    expected = [a[0], c[0], b[0], c[1], a[1], b[1], a[2], a[3]]
    assert [r.id for r in claim.leases] == expected


def test_a_storm_in_one_installation_delays_another_by_one_batch_at_most(ledger: Ledger) -> None:
    storm = _leases_of(ledger, 1, 30, installation_id=7, queued_at=NOW)
    (quiet,) = _leases_of(ledger, 2, 1, installation_id=8, queued_at=NOW + timedelta(minutes=1))
    with ledger.begin() as conn:
        first = claim_due(conn, now=NOW + timedelta(minutes=2), limit=5, hold=HOLD)
        second = claim_due(conn, now=NOW + timedelta(minutes=2), limit=5, hold=HOLD)
    # Queued a minute after the storm, and still in the first batch (after the storm's oldest).
    assert [r.id for r in first.leases] == [storm[0], quiet, *storm[1:4]]
    assert [r.id for r in second.leases] == storm[4:9]


def test_claims_made_at_the_same_moment_each_take_a_full_batch(postgres_ledger: str) -> None:
    """PostgreSQL: a claim whose rows are locked by another claim still in its transaction
    takes the next ones in turn, a full batch, not none (SQLite runs claims one at a time)."""
    empty(postgres_ledger)
    ledger = Ledger.open(postgres_ledger)
    try:
        ids = _leases_of(ledger, 1, 12, installation_id=7, queued_at=NOW)
        with ledger.begin() as one, ledger.begin() as other:
            first = claim_due(one, now=NOW, limit=4, hold=HOLD)
            second = claim_due(other, now=NOW, limit=4, hold=HOLD)
        assert [r.id for r in first.leases] == ids[:4]
        assert [r.id for r in second.leases] == ids[4:8]
    finally:
        ledger.close()


def test_a_heartbeat_keeps_a_claim_and_a_claim_without_one_lapses(ledger: Ledger) -> None:
    ids = put(ledger, identity(), *[lease(key_name=f"KEY_{i}") for i in range(3)], now=NOW)
    _queue_all(ledger, ids)
    hold = timedelta(seconds=30)
    with ledger.begin() as conn:
        claim = claim_due(conn, now=NOW, limit=10, hold=hold)
        done = claim.leases[0].id
        assert finish_revoked(conn, done, claim.token, now=NOW, detail="done")
        # Beaten at 20 s: held until 50 s, not only until 30 s; the finished lease is not held.
        held = extend_claim(conn, claim.token, ids, now=NOW + timedelta(seconds=20), hold=hold)
        assert held == set(ids) - {done}
        assert claim_due(conn, now=NOW + timedelta(seconds=49), limit=10, hold=hold).leases == []
        # No beat since (the worker died): lapsed one hold after the last beat, taken over.
        late = NOW + timedelta(seconds=50, microseconds=1)
        other = claim_due(conn, now=late, limit=10, hold=hold)
        assert {r.id for r in other.leases} == set(ids) - {done}
        # The first worker, back, holds nothing and may finish nothing.
        assert extend_claim(conn, claim.token, ids, now=late, hold=hold) == set()
        assert extend_claim(conn, other.token, ids, now=late, hold=hold) == set(ids) - {done}
        assert not finish_revoked(conn, other.leases[0].id, claim.token, now=late, detail="x")


def test_only_the_current_claim_may_finish_a_lease(ledger: Ledger) -> None:
    (lease_id,) = put(ledger, identity(), lease(), now=NOW)
    _queue_all(ledger, [lease_id])
    with ledger.begin() as conn:
        stale = claim_due(conn, now=NOW, limit=1, hold=HOLD)
        current = claim_due(conn, now=NOW + HOLD * 2, limit=1, hold=HOLD)
        assert not finish_revoked(conn, lease_id, stale.token, now=NOW, detail="late")
        assert finish_revoked(conn, lease_id, current.token, now=NOW, detail="done")
        assert not finish_revoked(conn, lease_id, current.token, now=NOW, detail="twice")
        record = get(conn, lease_id)
        events = [e.action for e in history(conn, lease_id)]
    assert record is not None
    assert record.state is LeaseState.REVOKED
    assert events == ["registered", "queued", "revoked"]


def test_failures_are_retried_later_and_failed_leases_stay_in_the_queue(ledger: Ledger) -> None:
    (lease_id,) = put(ledger, identity(), lease(), now=NOW)
    _queue_all(ledger, [lease_id])
    later = NOW + timedelta(minutes=10)
    with ledger.begin() as conn:
        claim = claim_due(conn, now=NOW, limit=1, hold=HOLD)
        finish_failed(
            conn, lease_id, claim.token, now=NOW, error="boom", retry_at=later, give_up=True
        )
        assert claim_due(conn, now=NOW + timedelta(minutes=9), limit=1, hold=HOLD).leases == []
        retry = claim_due(conn, now=later, limit=1, hold=HOLD)
        counts = count_by_state(conn)
    assert [r.state for r in retry.leases] == [LeaseState.FAILED]
    assert retry.leases[0].last_error == "boom"
    assert counts[LeaseState.FAILED] == 1


def test_register_is_idempotent_and_refuses_a_taken_id(ledger: Ledger) -> None:
    from handler.ledger.leases import LeaseConflictError

    who = identity()
    item = lease()
    with ledger.begin() as conn:
        assert register(conn, who, [item], installation_id=5, now=NOW).created == 1
        assert register(conn, who, [item], installation_id=5, now=NOW).created == 0
        with pytest.raises(LeaseConflictError):
            register(conn, identity(run_id=1), [item], installation_id=5, now=NOW)
        changed = lease(lease_id=item.id, reference="random:other")
        with pytest.raises(LeaseConflictError):
            register(conn, who, [changed], installation_id=5, now=NOW)


def test_find_filters(ledger: Ledger) -> None:
    put(ledger, identity("octo/app", 1, run_id=10), lease(lifetime=Lifetime.RUN), now=NOW)
    put(
        ledger,
        identity("octo/app", 1, run_id=11, ref="refs/pull/4/merge"),
        lease(lifetime=Lifetime.PR),
        now=NOW,
    )
    put(ledger, identity("octo/lib", 2, run_id=12), lease(lifetime=Lifetime.JOB), now=NOW)
    with ledger.begin() as conn:
        assert len(find(conn, LeaseFilter(repository="Octo/App"))) == 2
        assert len(find(conn, LeaseFilter(repository="2"))) == 1
        assert len(find(conn, LeaseFilter(run_id=11))) == 1
        assert len(find(conn, LeaseFilter(pr_number=4))) == 1
        assert len(find(conn, LeaseFilter(lifetime=Lifetime.JOB))) == 1
        assert len(find(conn, LeaseFilter(states=(LeaseState.REVOKED,)))) == 0
        assert len(find(conn, LeaseFilter(limit=1))) == 1


def test_no_value_is_stored_anywhere(ledger: Ledger) -> None:
    """A lease row holds a reference and a fingerprint, never the value itself."""
    value = "rk_s3cr3tVALUEthat-must-not-be-stored"
    item = lease()
    from runkeys.leases import fingerprint

    item = msgspec.structs.replace(item, fingerprint=fingerprint(value))
    put(ledger, identity(), item, now=NOW)
    with ledger.begin() as conn:
        dump = [
            str(dict(row))
            for t in tables.metadata.sorted_tables
            for row in conn.execute(select(t)).mappings()
        ]
    assert value not in "".join(dump)


# --- environments -------------------------------------------------------------------------------


def test_an_environment_runkeys_created_is_deletable_once_no_live_lease_uses_it(
    ledger: Ledger,
) -> None:
    who = identity(environment="ci")
    first = lease(environment="ci-run-7", environment_created=True)
    second = lease(key_name="OTHER", environment="CI-RUN-7")  # GitHub ignores case
    manual = lease(key_name="MANUAL", environment="staging")  # made by a person: never deleted
    put(ledger, who, first, second, manual, now=NOW)
    with ledger.begin() as conn:
        assert deletable(conn) == []
    _queue_all(ledger, [first.id])
    with ledger.begin() as conn:
        assert deletable(conn) == []  # `second` still uses it
        conn.execute(update(tables.leases).values(state="revoked"))
        (env,) = deletable(conn)
        assert (env.name, env.repository) == ("ci-run-7", "octo/app")
        mark(conn, env.repository_id, env.name, state="deleted", now=NOW)
        assert deletable(conn) == []


def test_a_runs_leases_name_their_environment_in_one_statement(ledger: Ledger) -> None:
    """Ten leases of one environment (GitHub ignores case) and one of another: two upserts,
    not eleven, ending as eleven would: the first spelling kept, claimed if any lease says
    it created the environment."""
    who = identity()
    keys = [
        lease(key_name=f"KEY_{i}", environment="ci-pr-7" if i % 2 else "CI-PR-7") for i in range(10)
    ]
    keys[4] = lease(key_name="KEY_4", environment="CI-PR-7", environment_created=True)
    other = lease(key_name="OTHER", environment="staging")
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *rest: object) -> None:
        statements.append(statement)

    event.listen(ledger.engine, "before_cursor_execute", seen)
    try:
        put(ledger, who, *keys, other, now=NOW)
    finally:
        event.remove(ledger.engine, "before_cursor_execute", seen)
    assert len([s for s in statements if "INSERT INTO environments" in s]) == 2
    env = tables.environments
    with ledger.begin() as conn:
        rows = conn.execute(select(env.c.name, env.c.claimed).order_by(env.c.name)).all()
    assert [tuple(r) for r in rows] == [("CI-PR-7", True), ("staging", False)]


# --- seen ids -----------------------------------------------------------------------------------


def test_deliveries_and_token_ids_are_seen_once_and_forgotten_later(ledger: Ledger) -> None:
    with ledger.begin() as conn:
        assert first_delivery(conn, "d-1", event="ping", action=None, outcome="pong", now=NOW)
        assert not first_delivery(conn, "d-1", event="ping", action=None, outcome="pong", now=NOW)
        assert first_token_use(conn, "jti-1", NOW)
        assert not first_token_use(conn, "jti-1", NOW)
        assert prune(conn, now=NOW + timedelta(days=1)) == (0, 1)
        assert first_token_use(conn, "jti-1", NOW + timedelta(days=1))
        assert prune(conn, now=NOW + timedelta(days=9)) == (1, 1)
        assert first_delivery(conn, "d-1", event="ping", action=None, outcome="pong", now=NOW)


def test_a_version_4_ledger_gains_the_broker_tables_and_keeps_its_leases(empty_url: str) -> None:
    ledger = Ledger.open(empty_url, migrate_schema=False)
    old = lease(connection="ci_db")
    with ledger.begin() as conn:
        _migrated_to(conn, 4)
        conn.execute(tables.leases.insert().values(_row(identity(), old, 5, NOW)))
    assert migrate(ledger.engine) == [m.version for m in MIGRATIONS[4:]]  # 5 on
    with ledger.begin() as conn:
        assert [r.id for r in conn.execute(select(tables.leases))] == [old.id]
        assert list(conn.execute(select(tables.broker_requests))) == []
        assert list(conn.execute(select(tables.policy_decisions))) == []
    ledger.close()


def test_a_version_5_ledger_gains_the_alerts_table_and_keeps_its_leases(empty_url: str) -> None:
    ledger = Ledger.open(empty_url, migrate_schema=False)
    old = lease(connection="ci_db")
    with ledger.begin() as conn:
        _migrated_to(conn, 5)
        conn.execute(tables.leases.insert().values(_row(identity(), old, 5, NOW)))
    assert migrate(ledger.engine) == [6, 7, 8]
    assert stored(ledger, old.id).state.value == "active"
    with ledger.begin() as conn:
        record_alert(conn, AlertCheck(1296269, "octo/app", 1, 5), reason="t", now=NOW)
        assert get_alert(conn, 1296269, 1) is not None
    ledger.close()


def test_a_version_6_ledger_gains_the_log_scan_tables_and_keeps_its_leases(empty_url: str) -> None:
    ledger = Ledger.open(empty_url, migrate_schema=False)
    old = lease(connection="ci_db")
    with ledger.begin() as conn:
        _migrated_to(conn, 6)
        conn.execute(tables.leases.insert().values(_row(identity(), old, 5, NOW)))
    assert migrate(ledger.engine) == [7, 8]
    assert stored(ledger, old.id).state.value == "active"
    with ledger.begin() as conn:
        assert list(conn.execute(select(tables.lease_parts))) == []
        assert list(conn.execute(select(tables.log_scans))) == []
    ledger.close()


def test_a_version_7_ledger_gains_the_broker_requests_age_index_and_keeps_its_rows(
    empty_url: str,
) -> None:
    ledger = Ledger.open(empty_url, migrate_schema=False)
    row = {
        "repository_id": 1,
        "request_id": "r-1",
        "repository": "octo/app",
        "run_id": 2,
        "run_attempt": 1,
        "state": "granted",
        "lease_ids": ["l-1"],
        "created_at": NOW,
        "updated_at": NOW,
    }
    with ledger.begin() as conn:
        _migrated_to(conn, 7)
        conn.execute(tables.broker_requests.insert().values(row))
    assert migrate(ledger.engine) == [8]
    with ledger.begin() as conn:
        indexes = inspect(conn).get_indexes("broker_requests")
        assert [(i["name"], i["column_names"]) for i in indexes] == [
            ("ix_broker_requests_created", ["created_at"])
        ]
        assert [r._asdict() for r in conn.execute(select(tables.broker_requests))] == [row]
    ledger.close()


def _migrated_to(conn: Connection, version: int) -> None:
    """The schema as the first `version` steps made it, recorded as applied."""
    tables.schema_migrations.create(conn)
    for step in MIGRATIONS[:version]:
        step.apply(conn)
        conn.execute(
            tables.schema_migrations.insert().values(
                version=step.version, name=step.name, applied_at=NOW
            )
        )
