"""Pacing per installation against a stand-in that enforces GitHub's secondary limits with time
compressed (a GitHub minute in a second): the worker retires hundreds of secrets
across two installations without drawing one 403/429, honours a `Retry-After`, and revokes at
the provider even when GitHub's budget makes the secret's deletion wait."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest

from handler.config import ServiceConfig
from handler.ledger.history import history
from handler.ledger.queue import LeasesById, queue
from handler.service import Service
from handler.worker import RevocationWorker
from runkeys.github.secrets import SecretStore, WriteBudget
from runkeys.github.session import GitHubSession
from runkeys.leases import LeaseRequest, LeaseState
from runkeys_sandbox.launch import ThreadServer
from runkeys_sandbox.server.sandbox import Sandbox, SecondaryLimits
from runkeys_sandbox.server.state import App, Repository
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
