"""Pacing per installation against a stand-in that enforces GitHub's secondary limits with time
compressed (a GitHub minute in a second): the worker retires hundreds of secrets
across two installations without drawing one 403/429, honours a `Retry-After`, and revokes at
the provider even when GitHub's budget makes the secret's deletion wait. A secret scanning
alert's resolve waits for a spent minute, and is put off while the hour's budget is spent."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import msgspec
import pytest
from sqlalchemy import select

from handler.config import ServiceConfig
from handler.ledger import tables
from handler.ledger.alerts import (
    AlertCheck,
    AlertRecord,
    AlertState,
    Outcome,
    get_alert,
    record_alert,
)
from handler.ledger.history import history
from handler.ledger.queue import LeasesById, queue
from handler.service import Service
from handler.worker import RevocationWorker
from runkeys.github.pacing import Pacing
from runkeys.github.secrets import SecretStore, WriteBudget
from runkeys.github.session import GitHubSession
from runkeys.leases import LeaseRequest, LeaseState, SecretTarget, fingerprint
from runkeys_sandbox.launch import ThreadServer
from runkeys_sandbox.server.sandbox import Sandbox, SecondaryLimits
from runkeys_sandbox.server.state import App, Repository, SecretScanningAlert
from tests.service.conftest import make_environ
from tests.service.kit import (
    HTTP_PARAMS,
    Clock,
    TokenIssuer,
    identity,
    lease,
    put,
    states,
    stored,
)
from tests.services import unique

FACTOR = 60.0  # GitHub's minute in a second
WRITES_PER_MINUTE = 10  # GitHub's is 80; fewer, so that a short test runs into it


@dataclass
class World:
    sandbox: Sandbox
    app: App
    repos: list[Repository]
    installations: list[int]
    tokens: TokenIssuer
    issuer_url: str


@pytest.fixture
def world() -> Iterator[World]:
    tokens = TokenIssuer()
    issuer = ThreadServer(tokens)
    with Sandbox() as sandbox:
        app = sandbox.add_app()
        repos = [sandbox.add_repository(f"{unique(o).replace('_', '-')}/app") for o in "ab"]
        installations = [sandbox.install(app, [repo]).id for repo in repos]
        yield World(sandbox, app, repos, installations, tokens, issuer.url)
    issuer.stop()


def make_service(world: World, database_url: str, clock: Clock, **settings: str) -> Service:
    env = {
        **make_environ(world.sandbox, world.app, database_url),
        "RUNKEYS_CONNECTION_ISSUER": world.issuer_url,
        **settings,
    }
    return Service(ServiceConfig.from_env(env), clock=clock)


def paced_service(world: World, database_url: str, clock: Clock, **settings: str) -> Service:
    """`make_service` paced to `WRITES_PER_MINUTE` a GitHub minute, `FACTOR` times faster."""
    return make_service(
        world,
        database_url,
        clock,
        RUNKEYS_GITHUB_WRITES_PER_MINUTE=str(WRITES_PER_MINUTE),
        RUNKEYS_GITHUB_TIME_FACTOR=str(FACTOR),
        **settings,
    )


def leases_in(service: Service, world: World, repo: Repository, count: int) -> list[str]:
    """`count` http leases whose secrets are in `repo`, written there unpaced (before the
    stand-in enforces anything) and registered, queued."""
    assert service.config.github is not None
    store = SecretStore(
        GitHubSession(service.config.github), repo.full_name, budget=WriteBudget(10**6)
    )
    items: list[LeaseRequest] = []
    for i, reference in enumerate(world.tokens.mint(count)):
        item = lease(
            repository=repo.full_name,
            key_name=f"KEY_{i}",
            provider="http",
            connection="issuer",
            params=HTTP_PARAMS,
            reference=reference,
        )
        assert item.secret is not None
        store.put(item.secret, f"value-{i}")
        items.append(item)
    who = identity(repo.full_name, repo.id)
    installation = world.installations[world.repos.index(repo)]
    ids = put(service.ledger, who, *items, installation_id=installation)
    with service.ledger.begin() as conn:
        queue(conn, LeasesById(tuple(ids)), actor="test", reason="test", now=service.clock())
    return ids


def refusals_drawn(sandbox: Sandbox) -> list[tuple[int, str, str]]:
    return [(r.status, r.method, r.path) for r in sandbox.requests if r.status in (403, 429)]


def test_two_hundred_secrets_across_two_installations_draw_no_secondary_limit(
    world: World, database_url: str, clock: Clock
) -> None:
    service = paced_service(world, database_url, clock)
    ids = [i for repo in world.repos for i in leases_in(service, world, repo, 100)]
    world.sandbox.enforce_rate_limits(
        SecondaryLimits(writes_per_minute=WRITES_PER_MINUTE), time_factor=FACTOR
    )
    world.sandbox.clear_requests()
    started = time.monotonic()
    assert RevocationWorker(service).drain() == 200
    took = time.monotonic() - started
    service.close()

    assert refusals_drawn(world.sandbox) == []
    assert world.sandbox.rate_limit_refusals() == {}
    assert set(states(service.ledger, ids).values()) == {LeaseState.REVOKED.value}
    assert len(world.tokens.revoked) == 200
    assert all(world.sandbox.secret_names(repo) == [] for repo in world.repos)
    deletes = [r for r in world.sandbox.requests if r.method == "DELETE"]
    assert len(deletes) == 200  # one DELETE a secret: no refusal retried
    # 100 deletions an installation at 10 a (one-second) minute: at least 9 minutes each,
    # the two installations' minutes running side by side.
    minute = 60 / FACTOR
    assert took >= (100 / WRITES_PER_MINUTE - 1) * minute
    paces = {s.installation: s for s in service.pacing.states()}
    assert set(paces) == set(world.installations)
    for state in paces.values():
        assert state.waits > 0  # the limit was reached, and waited for
        assert state.refusals == 0
        assert state.writes_last_minute <= WRITES_PER_MINUTE
    text = service.metrics.exposition(service.ledger, service.clock).decode()
    assert "runkeys_github_rate_limit_refusals_total{" not in text
    for installation in world.installations:
        writes = f'runkeys_github_requests_total{{installation="{installation}",kind="write"}}'
        assert f"{writes} 100.0" in text
        limit = 'limit="writes a minute"'
        assert f'runkeys_github_pacing_waits_total{{installation="{installation}",{limit}}}' in text


def test_unpaced_the_same_work_draws_refusals(
    world: World, database_url: str, clock: Clock
) -> None:
    """The almost-right worker: without the pace's limit (a budget 1000 times GitHub's), the
    stand-in refuses, so the test above would have seen it."""
    service = make_service(
        world,
        database_url,
        clock,
        RUNKEYS_GITHUB_WRITES_PER_MINUTE="10000",
        RUNKEYS_GITHUB_TIME_FACTOR=str(FACTOR),
    )
    assert service.config.github is not None
    service.config = replace(service.config, github=replace(service.config.github, retries=0))
    leases_in(service, world, world.repos[0], 30)
    world.sandbox.enforce_rate_limits(
        SecondaryLimits(writes_per_minute=WRITES_PER_MINUTE), time_factor=FACTOR
    )
    RevocationWorker(service).run_once()
    service.close()
    assert refusals_drawn(world.sandbox)
    key = f"installation:{world.installations[0]}"
    assert world.sandbox.rate_limit_refusals()[key, "writes a minute"] > 0


def test_a_retry_after_holds_the_installations_next_call(
    world: World, database_url: str, clock: Clock
) -> None:
    service = make_service(world, database_url, clock)
    assert service.config.github is not None
    service.config = replace(service.config, github=replace(service.config.github, retries=0))
    ids = leases_in(service, world, world.repos[0], 2)
    # The first DELETE, whichever lease the worker takes first.
    world.sandbox.inject_fault("DELETE", r"/actions/secrets/KEY_\d$", status=429, retry_after=2)
    world.sandbox.clear_requests()
    started = time.monotonic()
    assert RevocationWorker(service).run_once() == 2
    took = time.monotonic() - started
    service.close()
    calls = [(r.method, r.path.rsplit("/", 1)[-1], r.status) for r in world.sandbox.requests]
    refused = calls[-3][1]
    other = "KEY_1" if refused == "KEY_0" else "KEY_0"
    assert calls[-3:] == [("DELETE", refused, 429), ("GET", other, 200), ("DELETE", other, 204)]
    assert took >= 2.0  # the GET after the refusal waited for its Retry-After
    (state,) = service.pacing.states()
    assert (state.refusals, state.waits) == (1, 1)
    assert 1.5 < state.waited_seconds <= 2.0
    text = service.metrics.exposition(service.ledger, service.clock).decode()
    installation = world.installations[0]
    assert f'runkeys_github_rate_limit_refusals_total{{installation="{installation}"}} 1.0' in text
    left = world.sandbox.requests[-1].response_headers["X-RateLimit-Remaining"]  # GitHub's word
    assert f'runkeys_github_primary_remaining{{installation="{installation}"}} {left}.0' in text
    by_key = {stored(service.ledger, i).secret.name: i for i in ids}  # type: ignore[union-attr]
    assert states(service.ledger, ids) == {
        by_key[refused]: LeaseState.REVOKING.value,  # to be tried again
        by_key[other]: LeaseState.REVOKED.value,
    }


def test_a_spent_github_budget_does_not_hold_back_the_revoke(
    world: World, database_url: str, clock: Clock
) -> None:
    # One attempt before a failure is given up on: waiting for GitHub's budget is no failure.
    service = make_service(world, database_url, clock, RUNKEYS_WORKER_MAX_ATTEMPTS="1")
    (lease_id,) = leases_in(service, world, world.repos[0], 1)
    world.sandbox.rate_limits["installation"] = 11  # 10 left after one call: the pace's reserve
    assert RevocationWorker(service).run_once() == 1
    service.close()
    assert set(world.tokens.revoked.values()) == {1}  # dead at its provider
    assert world.sandbox.secret_names(world.repos[0]) == ["KEY_0"]  # its deletion waits
    assert not [r for r in world.sandbox.requests if r.method == "DELETE"]
    with service.ledger.begin() as conn:
        (failed,) = [h for h in history(conn, lease_id) if h.action == "attempt_failed"]
    assert "primary rate limit" in (failed.detail or "")
    retry_at = stored(service.ledger, lease_id).next_attempt_at
    assert retry_at is not None
    assert timedelta(minutes=55) < retry_at - clock() < timedelta(minutes=67)  # Reset, spread
    assert states(service.ledger, [lease_id]) == {lease_id: LeaseState.REVOKING.value}


def test_refusals_retried_inside_pygithub_reach_the_pace(
    world: World, database_url: str, clock: Clock
) -> None:
    """PyGithub's retry (urllib3's) sleeps a Retry-After and tries again before the worker
    sees anything; `ObservedRetry` tells the pace all the same, every time."""
    service = make_service(world, database_url, clock)  # PyGithub's retries left on
    (lease_id,) = leases_in(service, world, world.repos[0], 1)
    world.sandbox.inject_fault(
        "DELETE", r"/actions/secrets/KEY_0$", status=429, retry_after=1, times=2
    )
    world.sandbox.clear_requests()
    assert RevocationWorker(service).run_once() == 1
    service.close()
    deletes = [r.status for r in world.sandbox.requests if r.method == "DELETE"]
    assert deletes == [429, 429, 204]
    assert states(service.ledger, [lease_id]) == {lease_id: LeaseState.REVOKED.value}
    (state,) = service.pacing.states()
    assert state.refusals == 2
    assert state.hold_until > 0


def delete_order(sandbox: Sandbox, repos: list[Repository]) -> list[int]:
    """Which repository (its index) each secret DELETE the stand-in answered was for."""
    return [
        i
        for r in sandbox.requests
        if r.method == "DELETE" and r.status == 204
        for i, repo in enumerate(repos)
        if f"/repos/{repo.full_name}/" in r.path
    ]


def minute_spent(service: Service, world: World, busy: Repository) -> None:
    """The busy installation's minute of writes spent by other writes, the stand-in enforcing
    the limits from now, its request log cleared."""
    pace = service.github.pace_for(busy.full_name)
    assert pace is not None
    for _ in range(WRITES_PER_MINUTE):
        with pace.request(write=True):
            pass
    assert pace.ready_in(write=True) > 0.5 * 60 / FACTOR
    world.sandbox.enforce_rate_limits(
        SecondaryLimits(writes_per_minute=WRITES_PER_MINUTE), time_factor=FACTOR
    )
    world.sandbox.clear_requests()


def test_a_paced_installation_does_not_hold_back_another(
    world: World, database_url: str, clock: Clock
) -> None:
    """One claim, two installations: the first's minute is spent, so its leases wait; the
    other's, claimed in the same batch and ready, go first instead of waiting behind them."""
    service = paced_service(world, database_url, clock)
    busy, quiet = world.repos
    ids = leases_in(service, world, busy, 6) + leases_in(service, world, quiet, 4)
    minute_spent(service, world, busy)
    assert RevocationWorker(service).run_once() == 10  # one batch holds both
    service.close()

    # Claimed interleaved (busy first), worked quiet first: all 4 before the busy's first.
    assert delete_order(world.sandbox, world.repos) == [1] * 4 + [0] * 6
    assert len(world.tokens.revoked) == 10
    assert set(world.tokens.revoked.values()) == {1}  # revoked first, and not again with the rest
    assert world.sandbox.rate_limit_refusals() == {}
    assert set(states(service.ledger, ids).values()) == {LeaseState.REVOKED.value}


def test_a_worker_works_other_installations_while_its_claim_waits_for_a_budget(
    world: World, database_url: str
) -> None:
    """A claim holds only the busy installation's leases, and its minute is spent; the quiet
    installation's leases come due after the claim was taken. The worker does not sleep on
    the busy budget with them waiting: it claims and retires them meanwhile, then the busy ones
    once their budget allows, each revoked once."""
    clock = Clock()
    service = paced_service(world, database_url, clock, RUNKEYS_WORKER_BATCH_SIZE="6")
    busy, quiet = world.repos
    taken = clock.now
    ids = leases_in(service, world, busy, 6)
    clock.now = taken + timedelta(seconds=1)
    ids += leases_in(service, world, quiet, 4)  # due a second after the claim is taken
    clock.now = taken

    # The claim is taken before the first revoke; the quiet leases come due after it.
    def come_due() -> None:
        clock.advance(seconds=2)

    world.tokens.on_revoke = come_due
    minute_spent(service, world, busy)
    assert RevocationWorker(service).run_once() == 10  # the busy claim, the quiet one inside it
    service.close()

    assert delete_order(world.sandbox, world.repos) == [1] * 4 + [0] * 6
    assert len(world.tokens.revoked) == 10
    assert set(world.tokens.revoked.values()) == {1}
    assert world.sandbox.rate_limit_refusals() == {}
    assert set(states(service.ledger, ids).values()) == {LeaseState.REVOKED.value}


# --- secret scanning alerts (issue 18) ---------------------------------------------------------


def leaked(service: Service, world: World, repo: Repository) -> tuple[str, SecretScanningAlert]:
    """A live http lease of `repo` with no secret in GitHub (its retirement sends GitHub
    nothing: only the alert's calls do), an alert raised on its value and recorded as the
    webhook records one; the installation may read and resolve alerts."""
    installation = world.sandbox.world.installation_for(world.app, repo)
    assert installation is not None
    permissions = {**installation.permissions, "secret_scanning_alerts": "write"}
    world.sandbox.update_installation(installation, permissions=permissions)
    value = secrets.token_urlsafe(32)
    (reference,) = world.tokens.mint(1)
    item = lease(
        repository=repo.full_name,
        provider="http",
        connection="issuer",
        params=HTTP_PARAMS,
        reference=reference,
        secret=False,
    )
    item = msgspec.structs.replace(item, fingerprint=fingerprint(value))
    (lease_id,) = put(
        service.ledger, identity(repo.full_name, repo.id), item, installation_id=installation.id
    )
    alert = world.sandbox.raise_secret_alert(repo, value)
    check = AlertCheck(repo.id, repo.full_name, alert.number, installation.id)
    with service.ledger.begin() as conn:
        record_alert(conn, check, reason="created", now=service.clock())
    return lease_id, alert


def alert_calls(sandbox: Sandbox, repo: Repository, alert: SecretScanningAlert) -> list[str]:
    path = f"/repos/{repo.full_name}/secret-scanning/alerts/{alert.number}"
    return [f"{r.method} {r.status}" for r in sandbox.requests if r.path == path]


def alert_row(service: Service, repo: Repository, number: int) -> tuple[AlertRecord, datetime]:
    """The alert's ledger row, and when it is due next."""
    with service.ledger.begin() as conn:
        found = get_alert(conn, repo.id, number)
        due = conn.scalar(
            select(tables.secret_alerts.c.next_attempt_at).where(
                tables.secret_alerts.c.repository_id == repo.id,
                tables.secret_alerts.c.number == number,
            )
        )
    assert found is not None
    assert due is not None
    return found, due


SLOW = 10.0  # GitHub's minute in 6 s: the resolve comes well inside the minute it finds spent


def test_an_alerts_resolve_waits_for_a_spent_minute_and_draws_no_refusal(
    world: World, database_url: str, clock: Clock
) -> None:
    """The installation's minute of writes is spent (real writes the stand-in counted) when
    the alert comes to be resolved: its PATCH waits for the minute instead of being refused
    as the minute's eleventh write, and the alert is resolved in the same cycle."""
    service = make_service(
        world,
        database_url,
        clock,
        RUNKEYS_GITHUB_WRITES_PER_MINUTE=str(WRITES_PER_MINUTE),
        RUNKEYS_GITHUB_TIME_FACTOR=str(SLOW),
    )
    repo = world.repos[0]
    lease_id, alert = leaked(service, world, repo)
    world.sandbox.enforce_rate_limits(
        SecondaryLimits(writes_per_minute=WRITES_PER_MINUTE), time_factor=SLOW
    )
    store = service.secrets_for(repo.full_name)
    for i in range(WRITES_PER_MINUTE):
        store.put(SecretTarget(repo.full_name, f"OTHER_{i}"), f"other-{i}")
    world.sandbox.clear_requests()

    assert RevocationWorker(service).run_once() == 1
    service.close()

    assert stored(service.ledger, lease_id).state.value == LeaseState.REVOKED.value
    assert (alert.state, alert.resolution) == ("resolved", "revoked")
    assert alert_calls(world.sandbox, repo, alert) == ["GET 200", "GET 200", "PATCH 200"]
    assert refusals_drawn(world.sandbox) == []
    assert world.sandbox.rate_limit_refusals() == {}
    row, _ = alert_row(service, repo, alert.number)
    assert (row.state, row.outcome, row.attempts) == (AlertState.DONE, Outcome.RETIRED, 0)


class PaceClock:
    """The paces' clock, moved by the test; a pace's sleep moves it at once."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_an_alert_is_put_off_while_the_hours_writes_are_spent_then_resolved(
    world: World, database_url: str, clock: Clock
) -> None:
    """The installation's 500 writes of the hour are spent when the alert comes to be
    resolved: longer than a call may wait, so the alert is put off until the hour's first
    write ages out (no PATCH sent, no failed attempt counted), then resolved."""
    service = make_service(world, database_url, clock)
    pace_clock = PaceClock()
    service.pacing = Pacing(
        service.config.worker.github_limits(),
        clock=pace_clock,
        sleep=pace_clock.sleep,
        events=service.metrics.pacing,
    )
    repo = world.repos[0]
    lease_id, alert = leaked(service, world, repo)
    worker = RevocationWorker(service)
    assert worker.alerts.check() == 1  # matched, its lease queued
    pace = service.github.pace_for(repo.full_name)
    assert pace is not None
    first = pace_clock.now
    for _ in range(500):  # GitHub's writes an hour, by other calls of the installation
        with pace.request(write=True):
            pass
    world.sandbox.clear_requests()

    assert worker.run_once() == 1
    assert stored(service.ledger, lease_id).state.value == LeaseState.REVOKED.value
    assert alert.state == "open"
    assert "PATCH" not in " ".join(alert_calls(world.sandbox, repo, alert))
    row, due = alert_row(service, repo, alert.number)
    assert (row.state, row.attempts, row.last_error) == (AlertState.MATCHED, 0, None)
    hour_left = first + 3600 - pace_clock.now  # until the hour's first write ages out
    assert due == clock.now + timedelta(seconds=hour_left)

    pace_clock.now += hour_left
    clock.now = due
    worker.run_once()
    service.close()

    assert (alert.state, alert.resolution) == ("resolved", "revoked")
    assert alert_calls(world.sandbox, repo, alert)[-1] == "PATCH 200"
    assert refusals_drawn(world.sandbox) == []
    row, _ = alert_row(service, repo, alert.number)
    assert (row.state, row.outcome, row.attempts) == (AlertState.DONE, Outcome.RETIRED, 0)
