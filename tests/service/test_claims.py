"""Claims that cover the work, with real `runkeys worker` processes on one PostgreSQL ledger and
GitHub slowed by the stand-in's fault injection: three workers whose batches outlast a short
claim delete each secret once and lose no claim; a worker killed with SIGKILL mid-batch, or
while it revokes keys ahead of their deletion, leaves its leases to another within the default
30 s, each finished once."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from handler.config import ServiceConfig, WorkerSettings
from handler.ledger import tables
from handler.ledger.history import history
from handler.ledger.leases import register
from handler.ledger.queue import LeasesById, queue
from handler.service import Service
from runkeys_sandbox.launch import ThreadServer
from tests.service.conftest import GitHub, empty, make_environ
from tests.service.kit import HTTP_PARAMS, HeldIssuer, TokenIssuer, identity, states
from tests.service.served import running_worker, wait_for, worker_process

pytestmark = pytest.mark.slow
MEET_WITHIN = 60  # seconds for every worker to start and claim: a deadline, not a measure
SECRET_DELETE = r"^/repos/[^/]+/[^/]+/actions/secrets/[^/]+$"


@dataclass
class MeetingIssuer(TokenIssuer):
    """Holds each worker's first revocation until `parties` have arrived. A worker revokes one
    lease at a time, so they are the workers': all hold claimed batches at once."""

    parties: int = 1
    arrived: int = 0
    meeting: threading.Barrier = field(init=False)

    def __post_init__(self) -> None:
        self.meeting = threading.Barrier(self.parties, timeout=MEET_WITHIN)

    def _revoke(self, token_id: str) -> Response:
        with self.lock:
            self.arrived += 1
            held = self.arrived <= self.parties
        if held:
            self.meeting.wait()  # broken on timeout: answered 500, and the test fails
        return super()._revoke(token_id)


@dataclass
class Setup:
    service: Service
    tokens: MeetingIssuer
    env: dict[str, str]
    ids: list[str]


@contextmanager
def prepared(github: GitHub, postgres_ledger: str, *, parties: int, count: int) -> Iterator[Setup]:
    """`count` leases of one repository, each with its secret at GitHub, all due; an issuer
    that holds the first revocations until `parties` workers revoke; the workers' environment."""
    empty(postgres_ledger)
    tokens = MeetingIssuer(parties=parties)
    server = ThreadServer(tokens)
    env = {
        **make_environ(github.sandbox, github.app, postgres_ledger),
        "RUNKEYS_CONNECTION_ISSUER": server.url.replace("http://", "http://ci:issuer-secret@"),
    }
    service = Service(ServiceConfig.from_env(env))
    params = {**HTTP_PARAMS, "timeout": MEET_WITHIN + 30}  # a revocation held at the meeting
    items = [
        github.lease(key_name=f"KEY_{i}", provider="http", connection="issuer",
                     connection_url=server.url, params=params, reference=reference)
        for i, reference in enumerate(tokens.mint(count))
    ]  # fmt: skip
    store = service.secrets_for(github.repo.full_name)
    for item in items:
        assert item.secret is not None
        store.put(item.secret, "value")
    now = datetime.now(UTC)
    ids = [item.id for item in items]
    with service.ledger.begin() as conn:
        who = identity(github.repo.full_name, github.repo.id)
        register(conn, who, items, installation_id=None, now=now)
        queue(conn, LeasesById(tuple(ids)), actor="test", reason="test", now=now)
    github.sandbox.clear_requests()
    try:
        yield Setup(service, tokens, env, ids)
    finally:
        github.sandbox.clear_faults()
        service.close()
        server.stop()


def secret_deletes(github: GitHub) -> Counter[str]:
    return Counter(
        r.path.rsplit("/", 1)[1]
        for r in github.sandbox.requests
        if r.method == "DELETE" and "/actions/secrets/" in r.path
    )


def revoked_once(setup: Setup) -> None:
    """Every lease revoked, each recorded revoked once, each revoked at the issuer."""
    leases, events = tables.leases, tables.lease_events
    with setup.service.ledger.begin() as conn:
        states = dict(conn.execute(select(leases.c.id, leases.c.state)).all())
        recorded: Counter[str] = Counter(
            dict(
                conn.execute(
                    select(events.c.lease_id, func.count())
                    .where(events.c.action == "revoked")
                    .group_by(events.c.lease_id)
                ).all()
            )
        )
    assert states == dict.fromkeys(setup.ids, "revoked")
    assert recorded == Counter(dict.fromkeys(setup.ids, 1))
    assert setup.tokens.live == set()


def test_three_workers_whose_batches_outlast_a_short_claim_delete_each_secret_once(
    github: GitHub, postgres_ledger: str, tmp_path: Path
) -> None:
    """Batches of 4 with GitHub at 0.7 s a DELETE take 3 s or more; the claim is 2 s. Without
    a heartbeat, a claim lapses mid-batch (or while its worker waits at the meeting) and another
    worker deletes the same secrets again ("claim lost")."""
    with prepared(github, postgres_ledger, parties=3, count=12) as setup:
        github.sandbox.inject_fault("DELETE", SECRET_DELETE, status=None, delay=0.7, times=None)
        env = {
            **setup.env,
            "RUNKEYS_WORKER_CLAIM_TIMEOUT": "2",
            "RUNKEYS_WORKER_BATCH_SIZE": "4",
        }
        logs = [tmp_path / f"worker-{n}.log" for n in (1, 2, 3)]
        workers = [worker_process(env, log, "--once", "--no-sweep") for log in logs]
        for process in workers:
            assert process.wait(120) == 0
        assert not setup.tokens.meeting.broken, "the three workers never held batches at once"
        assert secret_deletes(github) == Counter({f"KEY_{i}": 1 for i in range(12)})
        assert setup.tokens.revoke_calls == dict.fromkeys(setup.tokens.revoke_calls, 1)
        revoked_once(setup)
        text = "".join(log.read_text() for log in logs)
        assert "claim lost" not in text
        assert text.count('"message": "lease revoked"') == 12


def test_a_worker_killed_mid_batch_leaves_its_leases_to_another_within_30_s(
    github: GitHub, postgres_ledger: str, tmp_path: Path
) -> None:
    """The default claim (30 s), a heartbeat every 10 s: the killed worker's claim lapses at
    most 30 s after its death, and the other worker then finishes each of its leases once."""
    with prepared(github, postgres_ledger, parties=1, count=10) as setup:
        hold = WorkerSettings().claim_timeout
        assert hold <= timedelta(seconds=30)
        github.sandbox.inject_fault("DELETE", SECRET_DELETE, status=None, delay=0.5, times=None)
        env = {
            **setup.env,
            "RUNKEYS_WORKER_BATCH_SIZE": "10",
            "RUNKEYS_WORKER_POLL_INTERVAL": "0.2",
        }
        doomed = worker_process(env, tmp_path / "doomed.log", "--no-sweep")
        wait_for(lambda: sum(secret_deletes(github).values()) >= 2, MEET_WITHIN, "two DELETEs")
        os.killpg(doomed.pid, signal.SIGKILL)
        killed_at = datetime.now(UTC)
        doomed.wait(10)
        leases = tables.leases
        with setup.service.ledger.begin() as conn:
            left = set(
                conn.scalars(
                    select(leases.c.id).where(
                        leases.c.state == "revoking", leases.c.claim_token.is_not(None)
                    )
                )
            )
        assert 0 < len(left) < 10, "the worker was not killed mid-batch"
        heir_log = tmp_path / "heir.log"
        with running_worker(env, heir_log, "--no-sweep"):
            deadline = hold.total_seconds() + 30  # the lapse, then the leases' slowed DELETEs
            wait_for(lambda: heir_log.read_text().count("lease revoked") >= len(left), deadline,
                     "the heir to finish the killed worker's leases")  # fmt: skip
        with setup.service.ledger.begin() as conn:
            taken_over = min(conn.scalars(select(leases.c.retired_at).where(leases.c.id.in_(left))))
        # Taken over within the hold of the death: the first finished within it, plus one poll and
        # one lease's work (0.5 s at GitHub) and a second of slack for a busy machine.
        assert taken_over - killed_at <= hold + timedelta(seconds=2.5)
        revoked_once(setup)
        # Only the lease in hand at the kill may have had its DELETE sent twice (the second a 404).
        twice = [name for name, n in secret_deletes(github).items() if n > 1]
        assert len(twice) <= 1
        assert set(secret_deletes(github)) == {f"KEY_{i}" for i in range(10)}


ENVIRONMENTS = ("ci-pr-1", "ci-pr-2", "ci-pr-3")  # due in this order, one claim each
KEYS = 10
AHEAD = 4  # the third environment's keys revoked ahead before the kill


def test_a_worker_killed_while_revoking_ahead_leaves_its_leases_to_another_within_30_s(
    github: GitHub, postgres_ledger: str, tmp_path: Path
) -> None:
    """Three runs of one installation, each with its own environment of 10 keys, and GitHub's
    minute of writes one write long. The worker deletes the first environment; the second's
    keys die at the issuer, and while its DELETE waits for the budget the worker claims the
    third's to revoke them ahead (`_revoke_ahead`, nested in the second claim), and is killed
    with SIGKILL after four of those, the fifth held at the issuer: two claims held, nothing
    of them recorded. Another worker takes both over once they lapse (the default 30 s): it
    revokes again what the dead one revoked unrecorded (the issuer answers 404: already
    gone), deletes each environment once, and records each lease revoked once."""
    hold = WorkerSettings().claim_timeout
    assert hold <= timedelta(seconds=30)
    empty(postgres_ledger)
    answered = 2 * KEYS + AHEAD  # the first environment's, the second's, then the third's
    tokens = HeldIssuer(answered=answered)
    server = ThreadServer(tokens)
    unpaced = {
        **make_environ(github.sandbox, github.app, postgres_ledger),
        "RUNKEYS_CONNECTION_ISSUER": server.url.replace("http://", "http://ci:issuer-secret@"),
    }
    env = {
        **unpaced,
        "RUNKEYS_GITHUB_WRITES_PER_MINUTE": "1",
        # A GitHub minute in 15 s: the second claim's ten revokes take far less, so its DELETE
        # still waits for the budget.
        "RUNKEYS_GITHUB_TIME_FACTOR": "4",
        "RUNKEYS_WORKER_BATCH_SIZE": str(KEYS),
        "RUNKEYS_WORKER_POLL_INTERVAL": "0.2",
    }
    service = Service(ServiceConfig.from_env(unpaced))  # the test's own writes wait for nothing
    params = {**HTTP_PARAMS, "timeout": MEET_WITHIN + 30}  # a revocation held until the kill
    store = service.secrets_for(github.repo.full_name)
    runs: dict[str, list[str]] = {}
    references: dict[str, list[str]] = {}
    for run_id, name in enumerate(ENVIRONMENTS, start=1):
        store.create_environment(name)
        references[name] = tokens.mint(KEYS)
        items = [
            github.lease(key_name=f"KEY_{i}", provider="http", connection="issuer",
                         connection_url=server.url, params=params, reference=reference,
                         environment=name, environment_created=True)
            for i, reference in enumerate(references[name])
        ]  # fmt: skip
        for item in items:
            assert item.secret is not None
            store.put(item.secret, "value")
        now = datetime.now(UTC)
        who = identity(github.repo.full_name, github.repo.id, run_id)
        runs[name] = [item.id for item in items]
        with service.ledger.begin() as conn:
            register(conn, who, items, installation_id=github.installation.id, now=now)
            queue(conn, LeasesById(tuple(runs[name])), actor="test", reason="test", now=now)
    first, second, third = (runs[name] for name in ENVIRONMENTS)
    every = first + second + third
    url = f"/repos/{github.repo.full_name}/environments"
    github.sandbox.clear_requests()

    def deletes() -> list[str]:
        return sorted(r.path for r in github.sandbox.requests if r.method == "DELETE")

    heir_log = tmp_path / "heir.log"
    try:
        doomed = worker_process(env, tmp_path / "doomed.log", "--no-sweep")
        try:
            wait_for(lambda: tokens.calls > answered, MEET_WITHIN, "a revocation ahead held")
        finally:
            os.killpg(doomed.pid, signal.SIGKILL)
        killed_at = datetime.now(UTC)
        doomed.wait(10)
        leases, events = tables.leases, tables.lease_events
        with service.ledger.begin() as conn:
            held = dict(conn.execute(select(leases.c.id, leases.c.claim_token)).all())
            recorded_ahead = conn.scalar(
                select(func.count())
                .select_from(events)
                .where(events.c.action == "provider_revoked")
            )
        assert states(service.ledger, first) == dict.fromkeys(first, "revoked")
        assert states(service.ledger, second + third) == dict.fromkeys(second + third, "revoking")
        # Killed in `_revoke_ahead`: the second environment's claim and the third's held at once.
        (second_claim,) = {held[i] for i in second}
        (third_claim,) = {held[i] for i in third}
        assert None not in (second_claim, third_claim)
        assert second_claim != third_claim
        assert recorded_ahead == 0
        revoked_before = set(tokens.revoked)
        assert revoked_before >= set(references["ci-pr-1"] + references["ci-pr-2"])
        assert len(revoked_before & set(references["ci-pr-3"])) == AHEAD
        assert deletes() == [f"{url}/ci-pr-1"]
        tokens.released.set()  # the held revocation goes through, its caller dead

        with running_worker(env, heir_log, "--no-sweep"):
            # The lapse, then one GitHub minute before the heir's second DELETE, and slack.
            wait_for(lambda: states(service.ledger, every) == dict.fromkeys(every, "revoked"),
                     hold.total_seconds() + 15 + 30, "the heir to finish both claims")  # fmt: skip
        with service.ledger.begin() as conn:
            retired = list(
                conn.scalars(select(leases.c.retired_at).where(leases.c.id.in_(second + third)))
            )
            histories = {
                i: [(e.actor, e.action, e.detail) for e in history(conn, i)] for i in every
            }
        # Taken over within the hold of the death: the first finished within it, plus one poll,
        # ten revokes and an environment's three calls, and a second of slack.
        assert min(retired) - killed_at <= hold + timedelta(seconds=2.5)
        assert tokens.revoked == dict.fromkeys(tokens.revoked, 1)
        assert set(tokens.revoked) == {r for refs in references.values() for r in refs}
        assert tokens.live == set()
        calls = tokens.revoke_calls
        assert [calls[r] for r in references["ci-pr-1"]] == [1] * KEYS
        # Revoked by the dead worker without a record: asked again, and answered "gone".
        assert [calls[r] for r in references["ci-pr-2"]] == [2] * KEYS
        ahead = sorted(calls[r] for r in references["ci-pr-3"])
        assert ahead == [1] * (KEYS - AHEAD - 1) + [2] * (AHEAD + 1)
        assert deletes() == [f"{url}/{name}" for name in ENVIRONMENTS]  # no secret alone
        assert set(ENVIRONMENTS).isdisjoint(github.sandbox.environment_names(github.repo))
        # Nothing of the dead worker's: no revoke ahead recorded, and each retired once.
        for name, ids in runs.items():
            for lease_id in ids:
                assert [(actor, action) for actor, action, _ in histories[lease_id]] == [
                    ("action", "registered"),
                    ("test", "queued"),
                    ("worker", "revoked"),
                ]
                assert histories[lease_id][-1][2] == (
                    f"revoked at the provider, secret deleted with environment {name}"
                )
        assert "claim lost" not in heir_log.read_text()
    finally:
        tokens.released.set()
        service.close()
        server.stop()
