"""Two `runkeys worker` processes against one PostgreSQL ledger with 1,000 due leases, held
until both are revoking at once: each lease is revoked exactly once (counted at the issuer) and
recorded revoked once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from handler.ledger import Ledger, tables
from handler.ledger.leases import register
from handler.ledger.queue import LeasesById, queue
from runkeys_sandbox.launch import ThreadServer
from tests.service.conftest import GitHub, empty, make_environ
from tests.service.kit import HTTP_PARAMS, TokenIssuer, identity
from tests.service.served import worker_process

pytestmark = pytest.mark.slow
LEASES = 1000
MEET_WITHIN = 60  # seconds for the second worker to start and claim: a deadline, not a measure


@dataclass
class MeetingIssuer(TokenIssuer):
    """Holds the first revocation until a second arrives. A worker revokes one lease at a time,
    so the second is the other worker's: both hold claimed work at once, whatever the
    scheduler does."""

    meeting: threading.Barrier = field(
        default_factory=lambda: threading.Barrier(2, timeout=MEET_WITHIN)
    )
    arrived: int = 0

    def _revoke(self, token_id: str) -> Response:
        with self.lock:
            self.arrived += 1
            held = self.arrived <= 2
        if held:
            self.meeting.wait()  # broken on timeout: answered 500, and the test fails
        return super()._revoke(token_id)


@pytest.fixture
def issuer() -> Iterator[tuple[MeetingIssuer, str]]:
    tokens = MeetingIssuer()
    server = ThreadServer(tokens)
    yield tokens, server.url
    server.stop()


def test_two_workers_revoke_each_of_1000_leases_exactly_once(
    github: GitHub, postgres_ledger: str, issuer: tuple[MeetingIssuer, str], tmp_path: Path
) -> None:
    empty(postgres_ledger)
    tokens, url = issuer
    references = tokens.mint(LEASES)
    ledger = Ledger.open(postgres_ledger)
    now = datetime.now(UTC)
    # Long enough for a revocation held at the meeting.
    params = {**HTTP_PARAMS, "timeout": MEET_WITHIN + 30}
    items = [
        github.lease(key_name=f"KEY_{i}", provider="http", connection="issuer",
                     connection_url=url, params=params, reference=reference, secret=False)
        for i, reference in enumerate(references)
    ]  # fmt: skip
    with ledger.begin() as conn:
        for start in range(0, LEASES, 100):
            who = identity(github.repo.full_name, github.repo.id, run_id=start + 1)
            register(conn, who, items[start : start + 100], installation_id=None, now=now)
        queue(conn, LeasesById(tuple(i.id for i in items)), actor="test", reason="test", now=now)
    env = {
        **make_environ(github.sandbox, github.app, postgres_ledger),
        "RUNKEYS_CONNECTION_ISSUER": url.replace("http://", "http://ci:issuer-secret@"),
        "RUNKEYS_WORKER_BATCH_SIZE": "10",
    }
    workers = [
        worker_process(env, tmp_path / f"worker-{n}.log", "--once", "--no-sweep") for n in (1, 2)
    ]
    for process in workers:
        assert process.wait(120) == 0
    assert not tokens.meeting.broken, "the two workers were never revoking at the same time"
    assert len(tokens.revoke_calls) == LEASES
    assert set(tokens.revoke_calls.values()) == {1}  # no lease was revoked twice
    assert tokens.live == set()
    leases, events = tables.leases, tables.lease_events
    with ledger.begin() as conn:
        by_state: dict[str, int] = dict(
            conn.execute(select(leases.c.state, func.count()).group_by(leases.c.state)).all()
        )
        revoked_events = conn.execute(
            select(events.c.lease_id, func.count())
            .where(events.c.action == "revoked")
            .group_by(events.c.lease_id)
        ).all()
    assert by_state == {"revoked": LEASES}
    assert len(revoked_events) == LEASES
    assert {count for _, count in revoked_events} == {1}
    logs = [(tmp_path / f"worker-{n}.log").read_text() for n in (1, 2)]
    # Each revocation recorded by the one worker that made it, none by both.
    assert sum(log.count('"message": "lease revoked"') for log in logs) == LEASES
    ledger.close()
