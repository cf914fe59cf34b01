"""Two `runkeys worker` processes against one PostgreSQL ledger with 1,000 due leases, held
until both are revoking at once: each lease is revoked exactly once (counted at the issuer) and
recorded revoked once."""

from __future__ import annotations

import threading
from collections import Counter
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
from runkeys.github.secrets import SecretStore, WriteBudget
from runkeys.github.session import AppCredentials, GitHubConfig, GitHubSession
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


def two_workers(
    github: GitHub,
    postgres_ledger: str,
    issuer: tuple[MeetingIssuer, str],
    tmp_path: Path,
    *,
    batch: int,
) -> None:
    """Two `runkeys worker --once` processes, claiming `batch` at a time, run to their end;
    they met (both revoking at once)."""
    tokens, url = issuer
    env = {
        **make_environ(github.sandbox, github.app, postgres_ledger),
        "RUNKEYS_CONNECTION_ISSUER": url.replace("http://", "http://ci:issuer-secret@"),
        "RUNKEYS_WORKER_BATCH_SIZE": str(batch),
    }
    workers = [
        worker_process(env, tmp_path / f"worker-{n}.log", "--once", "--no-sweep") for n in (1, 2)
    ]
    for process in workers:
        assert process.wait(120) == 0
    assert not tokens.meeting.broken, "the two workers were never revoking at the same time"


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
    two_workers(github, postgres_ledger, issuer, tmp_path, batch=10)
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


ENVIRONMENTS = 20


def test_two_workers_claiming_whole_environments_work_each_lease_once(
    github: GitHub, postgres_ledger: str, issuer: tuple[MeetingIssuer, str], tmp_path: Path
) -> None:
    """20 environments runkeys created, 10 leases each, all due; two workers claiming 4 at a
    time take whole environments, side by side: each lease is revoked once and recorded once,
    no secret or environment is deleted twice, and every secret is gone (with its environment,
    or alone where the two claims met in one environment)."""
    empty(postgres_ledger)
    tokens, url = issuer
    ledger = Ledger.open(postgres_ledger)
    config = GitHubConfig(
        api_url=github.sandbox.url,
        app=AppCredentials(str(github.app.id), github.app.private_key_pem),
    )
    store = SecretStore(GitHubSession(config), github.repo.full_name, budget=WriteBudget(10**6))
    params = {**HTTP_PARAMS, "timeout": MEET_WITHIN + 30}
    names = [f"ci-pr-{n}" for n in range(ENVIRONMENTS)]
    items = []
    with ledger.begin() as conn:
        for n, name in enumerate(names):
            store.create_environment(name)
            ours = [
                github.lease(key_name=f"KEY_{i}", provider="http", connection="issuer",
                             connection_url=url, params=params, reference=reference,
                             environment=name, environment_created=True)
                for i, reference in enumerate(tokens.mint(10))
            ]  # fmt: skip
            for item in ours:
                assert item.secret is not None
                store.put(item.secret, f"value-{n}")
            who = identity(github.repo.full_name, github.repo.id, run_id=n + 1)
            register(conn, who, ours, installation_id=github.installation.id, now=datetime.now(UTC))
            items += ours
    with ledger.begin() as conn:
        ids = tuple(i.id for i in items)
        queue(conn, LeasesById(ids), actor="test", reason="test", now=datetime.now(UTC))
    github.sandbox.clear_requests()
    two_workers(github, postgres_ledger, issuer, tmp_path, batch=4)
    assert tokens.revoke_calls == {item.reference: 1 for item in items}
    deletes = Counter(r.path for r in github.sandbox.requests if r.method == "DELETE")
    assert set(deletes.values()) == {1}  # nothing deleted twice
    with ledger.begin() as conn:
        revoked_events = conn.execute(
            select(tables.lease_events.c.lease_id, func.count())
            .where(tables.lease_events.c.action == "revoked")
            .group_by(tables.lease_events.c.lease_id)
        ).all()
        by_state: dict[str, int] = dict(
            conn.execute(
                select(tables.leases.c.state, func.count()).group_by(tables.leases.c.state)
            ).all()
        )
    assert by_state == {"revoked": len(items)}
    assert sorted(revoked_events) == sorted((item.id, 1) for item in items)
    gone = set(names) - set(github.sandbox.environment_names(github.repo))
    for name in set(names) - gone:  # split between the claims: each secret went alone
        assert github.sandbox.secret_names(github.repo, name) == []
    # Most environments were claimed whole and went in one DELETE.
    assert len(gone) >= ENVIRONMENTS // 2
    ledger.close()
