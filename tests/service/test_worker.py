"""The revocation worker against real HTTP: the `http` provider revoking at a local token issuer
and the sandbox's secrets and environments, on both engines."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest
from werkzeug.wrappers import Response

from handler.config import ServiceConfig
from handler.ledger.completions import pending, record_completion
from handler.ledger.history import history
from handler.ledger.queue import LeasesById, RunLeases, claim_due, queue
from handler.ledger.records import LeaseRecord
from handler.ledger.secrets import newer_writer
from handler.service import Service
from handler.worker import RevocationWorker, backoff
from runkeys.leases import LeaseRequest, LeaseState
from runkeys.oidc import RunIdentity
from runkeys_sandbox.launch import ThreadServer
from tests.service.conftest import GitHub
from tests.service.kit import HTTP_PARAMS, Clock, TokenIssuer, identity, put, stored
from tests.services import unique

ISSUER_PASSWORD = "issuer-pass-8d1c"


@pytest.fixture
def service(
    environ: dict[str, str], issuer: tuple[TokenIssuer, str], clock: Clock
) -> Iterator[Service]:
    _, url = issuer
    env = {
        **environ,
        "RUNKEYS_CONNECTION_ISSUER": url.replace("http://", f"http://:{ISSUER_PASSWORD}@"),
    }
    config = ServiceConfig.from_env(env)
    assert config.github is not None
    config = replace(
        config,
        github=replace(config.github, retries=0),  # a GitHub failure fails the attempt at once
        worker=replace(config.worker, max_attempts=3),
    )
    made = Service(config, clock=clock)
    yield made
    made.close()


def http_lease(github: GitHub, tokens: TokenIssuer, **fields: object) -> LeaseRequest:
    """Put in the ledger directly: no connection target (the worker revokes it unchecked)."""
    (reference,) = tokens.mint()
    return github.lease(
        provider="http", connection="issuer", params=HTTP_PARAMS, reference=reference, **fields
    )


def who(github: GitHub) -> RunIdentity:
    return identity(github.repo.full_name, github.repo.id)


def queue_all(service: Service, ids: list[str]) -> None:
    with service.ledger.begin() as conn:
        queue(conn, LeasesById(tuple(ids)), actor="test", reason="test", now=service.clock())


def record(service: Service, lease_id: str) -> LeaseRecord:
    return stored(service.ledger, lease_id)


def test_a_queued_lease_is_revoked_its_secret_and_environment_deleted(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str], clock: Clock
) -> None:
    tokens, _ = issuer
    store = service.secrets_for(github.repo.full_name)
    store.create_environment("ci-run-1")
    item = http_lease(github, tokens, environment="ci-run-1", environment_created=True)
    assert item.secret is not None
    store.put(item.secret, "the-value")
    assert github.sandbox.secret_names(github.repo, "ci-run-1") == ["API_TOKEN"]
    (lease_id,) = put(service.ledger, who(github), item, installation_id=github.installation.id)
    queue_all(service, [lease_id])
    clock.advance(seconds=3)
    assert RevocationWorker(service).drain() == 1
    assert tokens.revoked == {item.reference: 1}
    assert "ci-run-1" not in github.sandbox.environment_names(github.repo)
    stored = record(service, lease_id)
    assert stored.state is LeaseState.REVOKED
    with service.ledger.begin() as conn:
        assert [e.action for e in history(conn, lease_id)] == ["registered", "queued", "revoked"]
    text = service.metrics.exposition(service.ledger, service.clock).decode()
    assert 'runkeys_revocations_total{outcome="revoked"} 1.0' in text
    assert 'runkeys_revocation_latency_seconds_bucket{le="5.0"} 1.0' in text


def test_an_environment_stays_while_a_live_lease_uses_it(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    tokens, _ = issuer
    store = service.secrets_for(github.repo.full_name)
    store.create_environment("ci-pr-3")
    first = http_lease(
        github, tokens, key_name="FIRST", environment="ci-pr-3", environment_created=True
    )
    second = http_lease(github, tokens, key_name="SECOND", environment="ci-pr-3")
    manual = http_lease(github, tokens, key_name="THIRD", environment="production")
    store.create_environment("production")
    put(service.ledger, who(github), first, second, manual, installation_id=github.installation.id)
    queue_all(service, [first.id, manual.id])
    RevocationWorker(service).drain()
    assert {"ci-pr-3", "production"} <= set(github.sandbox.environment_names(github.repo))
    queue_all(service, [second.id])
    RevocationWorker(service).drain()
    names = github.sandbox.environment_names(github.repo)
    assert "ci-pr-3" not in names
    assert "production" in names  # runkeys did not create it: never deleted


def test_provider_only_retirement_leaves_github_alone(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    tokens, _ = issuer
    item = http_lease(github, tokens)
    assert item.secret is not None
    service.secrets_for(github.repo.full_name).put(item.secret, "kept")
    put(service.ledger, who(github), item, installation_id=github.installation.id)
    from handler.ledger.queue import RepositoryLeases, queue

    with service.ledger.begin() as conn:
        queue(
            conn,
            RepositoryLeases((github.repo.id,)),
            actor="t",
            reason="t",
            now=service.clock(),
            provider_only=True,
        )
    github.sandbox.clear_requests()
    RevocationWorker(service).drain()
    assert tokens.revoked == {item.reference: 1}
    assert github.sandbox.requests == []
    assert github.sandbox.secret_names(github.repo) == ["API_TOKEN"]


def test_failures_back_off_then_fail_then_are_retried_slowly(
    service: Service,
    github: GitHub,
    issuer: tuple[TokenIssuer, str],
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tokens, _ = issuer
    item = http_lease(github, tokens, secret=False)
    (lease_id,) = put(service.ledger, who(github), item)
    queue_all(service, [lease_id])
    tokens.fail_with = 503
    worker = RevocationWorker(service, rng=random.Random(7))
    caplog.set_level(logging.WARNING, logger="runkeys.service")
    delays = []
    for _ in range(3):  # max_attempts is 3 here
        assert worker.run_once() == 1
        due = record(service, lease_id).next_attempt_at
        assert due is not None
        delays.append(due - clock.now)
        assert worker.run_once() == 0  # not due yet
        clock.now = due
    final = record(service, lease_id)
    assert (final.state, final.attempts) == (LeaseState.FAILED, 3)
    assert "503" in (final.last_error or "")
    assert ISSUER_PASSWORD not in (final.last_error or "")
    assert timedelta(seconds=5) <= delays[0] <= timedelta(seconds=10)
    assert timedelta(seconds=10) <= delays[1] <= timedelta(seconds=20)
    assert delays[2] >= service.config.worker.failed_retry * 0.9
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["lease failed: revocation keeps failing"]
    text = service.metrics.exposition(service.ledger, service.clock).decode()
    assert 'runkeys_revocations_total{outcome="failed"} 1.0' in text
    assert 'runkeys_revocations_total{outcome="retry"} 2.0' in text
    assert 'runkeys_leases{state="failed"} 1.0' in text
    tokens.fail_with = None  # the issuer is back: the slow retry succeeds
    assert worker.run_once() == 1
    assert record(service, lease_id).state is LeaseState.REVOKED
    assert tokens.revoked == {item.reference: 1}


def test_a_connection_the_worker_lacks_fails_the_lease_at_once(
    service: Service, github: GitHub
) -> None:
    item = github.lease(provider="http", connection="elsewhere", params=HTTP_PARAMS, secret=False)
    (lease_id,) = put(service.ledger, who(github), item)
    queue_all(service, [lease_id])
    RevocationWorker(service).run_once()
    failed = record(service, lease_id)
    assert failed.state is LeaseState.FAILED
    assert "RUNKEYS_CONNECTION_ELSEWHERE" in (failed.last_error or "")


def test_a_github_failure_is_retried(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str], clock: Clock
) -> None:
    tokens, _ = issuer
    item = http_lease(github, tokens)
    assert item.secret is not None
    service.secrets_for(github.repo.full_name).put(item.secret, "value")
    (lease_id,) = put(service.ledger, who(github), item)
    queue_all(service, [lease_id])
    github.sandbox.inject_fault("DELETE", r"/actions/secrets/API_TOKEN$", status=502)
    worker = RevocationWorker(service)
    worker.run_once()
    first = record(service, lease_id)
    assert (first.state, first.attempts) == (LeaseState.REVOKING, 1)
    assert "502" in (first.last_error or "")
    assert first.next_attempt_at is not None
    clock.now = first.next_attempt_at
    worker.run_once()
    assert record(service, lease_id).state is LeaseState.REVOKED
    assert github.sandbox.secret_names(github.repo) == []
    assert tokens.revoked == {item.reference: 1}  # the second revoke found it gone: 404, fine
    assert tokens.revoke_calls == {item.reference: 2}


@pytest.mark.parametrize(
    ("status", "retry_after", "waits"),
    [(429, 5, 5.0), (403, 5, 5.0), (429, 30, 30.0), (429, None, None), (429, 0, None)],
)
def test_githubs_retry_after_holds_back_the_next_attempt(  # noqa: PLR0917 (fixtures)
    service: Service,
    github: GitHub,
    issuer: tuple[TokenIssuer, str],
    clock: Clock,
    status: int,
    retry_after: int | None,
    waits: float | None,
) -> None:
    """The client's retries spent (none here), the last answer's Retry-After sets the next
    attempt; shorter than the backoff (1 s or less here), or absent, it changes nothing."""
    tokens, _ = issuer
    item = http_lease(github, tokens)
    assert item.secret is not None
    service.secrets_for(github.repo.full_name).put(item.secret, "value")
    (lease_id,) = put(service.ledger, who(github), item)
    queue_all(service, [lease_id])
    github.sandbox.inject_fault(
        "DELETE", r"/actions/secrets/API_TOKEN$", status=status, retry_after=retry_after
    )
    worker = RevocationWorker(service, rng=random.Random(3))
    worker.settings = replace(worker.settings, backoff_base=timedelta(seconds=1))
    failed_at = clock.now
    assert worker.run_once() == 1
    first = record(service, lease_id)
    assert first.state is LeaseState.REVOKING
    assert first.next_attempt_at is not None
    with service.ledger.begin() as conn:
        (why,) = [e.detail for e in history(conn, lease_id) if e.action == "attempt_failed"]
    if waits is None:
        assert first.next_attempt_at - failed_at <= timedelta(seconds=1)
        assert "Retry-After" not in why
        return
    assert first.next_attempt_at == failed_at + timedelta(seconds=waits)
    assert why.startswith(
        f"GitHub asked to wait {waits:g} s (Retry-After): GitHub answered {status}"
    )
    assert (first.last_error or "").startswith(f"GitHub asked to wait {waits:g} s (Retry-After)")
    clock.now = first.next_attempt_at - timedelta(milliseconds=1)
    assert worker.run_once() == 0  # a millisecond early: not yet
    clock.now = first.next_attempt_at
    assert worker.run_once() == 1
    assert record(service, lease_id).state is LeaseState.REVOKED
    assert github.sandbox.secret_names(github.repo) == []


def test_retry_after_of_the_clients_last_retry_is_the_one_honoured(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str], clock: Clock
) -> None:
    """Through PyGithub's own retry (real time: it sleeps the first answer's 1 s): the header
    survives to the worker, and it is the last answer's that counts."""
    assert service.config.github is not None
    patient = Service(
        replace(service.config, github=replace(service.config.github, retries=1)), clock=clock
    )
    try:
        tokens, _ = issuer
        item = http_lease(github, tokens)
        assert item.secret is not None
        patient.secrets_for(github.repo.full_name).put(item.secret, "value")
        (lease_id,) = put(patient.ledger, who(github), item)
        queue_all(patient, [lease_id])
        secret = r"/actions/secrets/API_TOKEN$"
        github.sandbox.inject_fault("DELETE", secret, status=429, retry_after=1)
        github.sandbox.inject_fault("DELETE", secret, status=429, retry_after=5)
        worker = RevocationWorker(patient, rng=random.Random(3))
        worker.settings = replace(worker.settings, backoff_base=timedelta(seconds=1))
        github.sandbox.clear_requests()
        worker.run_once()
        deletes = [r for r in github.sandbox.requests if r.method == "DELETE"]
        assert [r.status for r in deletes] == [429, 429]  # the client retried once, then gave up
        assert record(patient, lease_id).next_attempt_at == clock.now + timedelta(seconds=5)
    finally:
        patient.close()


def test_two_installations_under_a_storm_are_served_round_robin(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str], clock: Clock
) -> None:
    """Installation A's storm (6 leases in one repository, then 2 in another) queued before
    installation B's 2: GitHub's DELETEs alternate A's repositories within A's turns, and A's
    turns with B's, batch after batch (4 a batch here)."""
    tokens, _ = issuer
    sandbox = github.sandbox
    owner_a, owner_b = (unique(n).replace("_", "-") for n in ("storm", "quiet"))
    a1, a2 = (sandbox.add_repository(f"{owner_a}/{n}") for n in ("one", "two"))
    (b,) = [sandbox.add_repository(f"{owner_b}/app")]
    storm, quiet = sandbox.install(github.app, [a1, a2]), sandbox.install(github.app, [b])
    counts = [(a1, storm, 6, 0.0), (a2, storm, 2, 0.5), (b, quiet, 2, 1.0)]
    for repo, installation, count, queued_late in counts:
        items = [
            http_lease(github, tokens, repository=repo.full_name, key_name=f"KEY_{i}")
            for i in range(count)
        ]
        store = service.secrets_for(repo.full_name)
        for item in items:
            assert item.secret is not None
            store.put(item.secret, "value")
        ids = put(
            service.ledger,
            identity(repo.full_name, repo.id),
            *items,
            installation_id=installation.id,
        )
        with service.ledger.begin() as conn:
            now = clock.now + timedelta(seconds=queued_late)
            queue(conn, LeasesById(tuple(ids)), actor="test", reason="test", now=now)
    clock.advance(seconds=5)
    sandbox.clear_requests()
    worker = RevocationWorker(service)
    worker.settings = replace(worker.settings, batch_size=4)
    assert worker.drain() == 10
    deletes = [
        r.path.split("/actions/secrets/")[0].removeprefix("/repos/")
        for r in sandbox.requests
        if r.method == "DELETE" and "/actions/secrets/" in r.path
    ]
    one, two, app = a1.full_name, a2.full_name, b.full_name
    # Turns: A goes one, two, one, two, one, one, one, one; B goes app, app.
    assert deletes == [one, app, two, app, one, two, one, one, one, one]


@dataclass
class TakenOverIssuer(TokenIssuer):
    """Runs `meanwhile` on the first revocation, before answering it."""

    meanwhile: Callable[[], None] = lambda: None

    def _revoke(self, token_id: str) -> Response:
        meanwhile, self.meanwhile = self.meanwhile, lambda: None
        meanwhile()
        return super()._revoke(token_id)


def test_a_lease_whose_claim_was_taken_over_before_its_turn_is_left_alone(
    environ: dict[str, str], github: GitHub, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """While the worker revokes its batch's first lease, its claim lapses (the clock jumps past
    it) and another worker takes the batch; the heartbeat learns so, and the worker neither
    records the first lease nor starts the second: the other worker has them."""
    tokens = TakenOverIssuer()
    server = ThreadServer(tokens)
    try:
        env = {
            **environ,
            "RUNKEYS_CONNECTION_ISSUER": server.url,
            "RUNKEYS_WORKER_CLAIM_TIMEOUT": "0.3",
        }
        busy = Service(ServiceConfig.from_env(env), clock=clock)
        references = tokens.mint(2)
        items = [
            github.lease(key_name=f"KEY_{i}", provider="http", connection="issuer",
                         params=HTTP_PARAMS, reference=reference, secret=False)
            for i, reference in enumerate(references)
        ]  # fmt: skip
        ids = put(busy.ledger, who(github), *items)
        queue_all(busy, ids)
        taken: list[str] = []

        def take_over() -> None:
            clock.advance(seconds=1)  # past the claim's 0.3 s: lapsed, as if the beat were late
            with busy.ledger.begin() as conn:
                other = claim_due(conn, now=clock.now, limit=10, hold=timedelta(minutes=5))
            taken.extend(r.id for r in other.leases)
            threading.Event().wait(0.5)  # the heartbeat (every 0.1 s) finds the claim gone

        tokens.meanwhile = take_over
        caplog.set_level(logging.WARNING, logger="runkeys.service")
        assert RevocationWorker(busy).run_once() == 2
        assert sorted(taken) == sorted(ids)
        assert sum(tokens.revoke_calls.values()) == 1  # the second lease was never started
        assert [r.getMessage() for r in caplog.records] == ["claim lost", "claim lost"]
        assert {record(busy, i).state for i in ids} == {LeaseState.REVOKING}
        busy.close()
    finally:
        server.stop()


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    base, cap = timedelta(seconds=10), timedelta(minutes=5)
    for attempts, full in [(1, 10), (2, 20), (3, 40), (6, 300), (40, 300)]:
        delay = backoff(attempts, base=base, cap=cap, rng=rng).total_seconds()
        assert full / 2 <= delay <= full
    spread = {backoff(3, base=base, cap=cap, rng=rng) for _ in range(20)}
    assert len(spread) > 10  # jittered, not lockstep


def test_the_worker_logs_no_secret(
    service: Service,
    github: GitHub,
    issuer: tuple[TokenIssuer, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    tokens, _ = issuer
    caplog.set_level(logging.DEBUG)
    item = http_lease(github, tokens)
    put(service.ledger, who(github), item)
    queue_all(service, [item.id])
    RevocationWorker(service).drain()
    from handler.logs import JsonFormatter

    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert ISSUER_PASSWORD not in text
    assert '"message": "lease revoked"' in text


def test_a_secret_a_newer_live_lease_wrote_is_kept(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str], clock: Clock
) -> None:
    """A re-run wrote the same secret in the same environment: retiring attempt 1 revokes its
    credential and leaves attempt 2's value (and the environment) alone."""
    tokens, _ = issuer
    store = service.secrets_for(github.repo.full_name)
    store.create_environment("ci-pr-9")
    older = http_lease(github, tokens, environment="ci-pr-9", environment_created=True)
    newer = http_lease(github, tokens, environment="CI-PR-9", environment_created=True)
    assert older.secret is not None
    assert newer.secret is not None
    put(service.ledger, who(github), older, now=clock.now)
    store.put(older.secret, "attempt-1-value")
    rerun = replace(who(github), run_attempt=2)
    put(service.ledger, rerun, newer, now=clock.advance(seconds=1))
    store.put(newer.secret, "attempt-2-value")
    queue_all(service, [older.id])
    assert RevocationWorker(service).drain() == 1
    assert tokens.revoked == {older.reference: 1}
    assert record(service, older.id).state is LeaseState.REVOKED
    assert github.sandbox.secret_value(github.repo, "API_TOKEN", "ci-pr-9") == "attempt-2-value"
    assert "ci-pr-9" in github.sandbox.environment_names(github.repo)
    with service.ledger.begin() as conn:
        events = [(e.actor, e.action, e.detail) for e in history(conn, older.id)]
    kept = f"secret kept: lease {newer.id} wrote it since and is still live"
    assert events[-2:] == [
        ("worker", "revoked", "revoked at the provider"),
        ("worker", "secret_kept", kept),
    ]
    # The newer lease retires: the last in the environment, which goes with its secret.
    queue_all(service, [newer.id])
    assert RevocationWorker(service).drain() == 1
    assert "ci-pr-9" not in github.sandbox.environment_names(github.repo)
    with service.ledger.begin() as conn:
        last = history(conn, newer.id)[-1]
    detail = "revoked at the provider, secret deleted with environment ci-pr-9"
    assert (last.action, last.detail) == ("revoked", detail)


def test_only_a_newer_live_lease_of_the_same_secret_keeps_it(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str], clock: Clock
) -> None:
    """Newer leases elsewhere, or retired, or older than the lease, do not keep its secret."""
    tokens, _ = issuer
    store = service.secrets_for(github.repo.full_name)
    store.create_environment("ci-pr-4")
    earlier = http_lease(github, tokens)  # registered before: the lease overwrote its value
    put(service.ledger, who(github), earlier, now=clock.advance(seconds=-5))
    mine = http_lease(github, tokens)  # a repository secret API_TOKEN
    assert mine.secret is not None
    put(service.ledger, who(github), mine, now=clock.advance(seconds=5))
    store.put(mine.secret, "mine")
    others = [
        http_lease(github, tokens, environment="ci-pr-4"),  # same name, another scope
        http_lease(github, tokens, key_name="OTHER_TOKEN"),  # same scope, another name
        http_lease(github, tokens),  # the same secret, but retired already
    ]
    foreign = replace(who(github), repository_id=github.repo.id + 1)  # another repository's
    put(service.ledger, foreign, http_lease(github, tokens), now=clock.advance(seconds=1))
    put(service.ledger, who(github), *others, now=clock.advance(seconds=1))
    queue_all(service, [others[2].id])
    RevocationWorker(service).drain()
    assert record(service, others[2].id).state is LeaseState.REVOKED
    store.put(mine.secret, "mine")  # the retired one deleted it; this test is about `mine`
    queue_all(service, [mine.id])
    assert RevocationWorker(service).drain() == 1
    assert github.sandbox.secret_names(github.repo) == []
    with service.ledger.begin() as conn:
        last = history(conn, mine.id)[-1]
    assert (last.action, last.detail) == ("revoked", "revoked at the provider, secret deleted")


def test_draining_applies_every_recorded_run_completion(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str], clock: Clock
) -> None:
    """More completions than a batch whose leases were retired since, then one whose lease is
    live: draining goes on past the batches that queue nothing, until none is left."""
    tokens, _ = issuer
    item = http_lease(github, tokens)
    (lease_id,) = put(service.ledger, who(github), item, installation_id=github.installation.id)
    repository_id = github.repo.id
    with service.ledger.begin() as conn:
        for run_id in range(1, service.config.worker.batch_size * 2 + 1):  # no lease names these
            run = RunLeases(repository_id, 10_000 + run_id, 1, github.installation.id)
            record_completion(conn, run, reason="t", now=service.clock())
        mine = RunLeases(repository_id, who(github).run_id, 1, github.installation.id)
        record_completion(conn, mine, reason="t", now=service.clock())
    clock.advance(seconds=3)
    assert RevocationWorker(service).drain() == 1
    assert record(service, lease_id).state is LeaseState.REVOKED
    with service.ledger.begin() as conn:
        assert pending(conn) == 0


def test_the_newer_writer_of_a_secret_is_registered_later_or_at_once_with_a_later_token(
    service: Service, github: GitHub, clock: Clock
) -> None:
    """The lease that wrote the secret since `mine`: one registered after it, or at the same
    moment with a later token (`issued_at`); never one registered before it, whatever its
    token says, nor one of the same moment and token. Of several, the last registered is named,
    and of those registered at one moment the lowest id (a stable name for the history)."""
    start = clock.now

    def registered(lease_id: str, *, at: float, issued: float) -> str:
        item = github.lease(lease_id=lease_id, now=start + timedelta(seconds=issued))
        put(service.ledger, who(github), item, now=start + timedelta(seconds=at))
        return item.id

    mine = registered("5" * 32, at=0, issued=0)

    mine_record = record(service, mine)

    def writer() -> str | None:
        with service.ledger.begin() as conn:
            return newer_writer(conn, mine_record)

    assert writer() is None
    registered("a" * 32, at=0, issued=0)  # the same moment, the same token: not newer
    registered("b" * 32, at=-1, issued=30)  # registered before, its token later: not newer
    registered("c" * 32, at=0, issued=-1)  # the same moment, an earlier token: not newer
    assert writer() is None
    same_moment = registered("d" * 32, at=0, issued=1)
    assert writer() == same_moment
    later = registered("e" * 32, at=1, issued=-5)  # registered later: newer, whatever its token
    assert writer() == later
    registered("f" * 32, at=2, issued=2)
    last_lowest = registered("9" * 32, at=2, issued=2)
    assert writer() == last_lowest
