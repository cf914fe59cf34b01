"""Two `runkeys worker` processes against one PostgreSQL ledger with 1,000 due leases: each
lease is revoked exactly once (counted at the issuer) and recorded revoked once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from handler.ledger import Ledger, tables
from handler.ledger.leases import register
from handler.ledger.queue import LeasesById, queue
from tests.service.conftest import GitHub, empty, make_environ
from tests.service.kit import TokenIssuer, WsgiServer, identity
from tests.service.served import worker_process

pytestmark = pytest.mark.slow
LEASES = 1000


@pytest.fixture
def issuer() -> Iterator[tuple[TokenIssuer, str]]:
    tokens = TokenIssuer()
    server = WsgiServer(tokens)
    yield tokens, server.url
    server.stop()


def test_two_workers_revoke_each_of_1000_leases_exactly_once(
    github: GitHub, postgres_ledger: str, issuer: tuple[TokenIssuer, str], tmp_path: Path
) -> None:
    empty(postgres_ledger)
    tokens, url = issuer
    references = tokens.mint(LEASES)
    ledger = Ledger.open(postgres_ledger)
    now = datetime.now(UTC)
    items = github.http_leases(references, url)
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
    shares = [log.count('"message": "lease revoked"') for log in logs]
    assert sum(shares) == LEASES
    assert min(shares) > 0, f"both workers should have taken work: {shares}"
    ledger.close()
