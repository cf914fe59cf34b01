"""Which environments the service deletes, read back from the sandbox: a retirement deletes its
own lease's environment and nothing else; the sweeper's pass deletes every one left behind,
counts only what it deleted, and goes on past one that fails, is kept or is already gone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from handler.config import ServiceConfig
from handler.ledger import tables
from handler.ledger.queue import LeasesById, queue
from handler.service import Service
from handler.worker import RevocationWorker
from runkeys.leases import LeaseRequest
from runkeys_sandbox.server.state import Repository
from tests.service.conftest import GitHub
from tests.service.kit import Clock, identity, put


@pytest.fixture
def service(environ: dict[str, str], clock: Clock) -> Iterator[Service]:
    config = ServiceConfig.from_env(environ)
    assert config.github is not None
    # A GitHub failure fails the attempt at once: left for the next pass, not retried here.
    made = Service(replace(config, github=replace(config.github, retries=0)), clock=clock)
    yield made
    made.close()


def registered(
    service: Service, repo: Repository, item: LeaseRequest, *, at: datetime | None = None
) -> str:
    put(service.ledger, identity(repo.full_name, repo.id), item, now=at or service.clock())
    return item.id


def retired_before(service: Service, lease_id: str) -> None:
    """Revoked, but its environment not deleted yet (the worker died, or GitHub failed)."""
    with service.ledger.begin() as conn:
        conn.exec_driver_sql(f"UPDATE leases SET state = 'revoked' WHERE id = '{lease_id}'")


def row(service: Service, repo: Repository, name: str) -> dict[str, Any]:
    env = tables.environments
    with service.ledger.begin() as conn:
        found = conn.execute(
            select(env).where(env.c.repository_id == repo.id, env.c.name_key == name)
        ).mappings()
        (one,) = list(found)
    return dict(one)


def test_a_retirement_deletes_its_own_leases_environment_and_no_other(
    service: Service, github: GitHub
) -> None:
    """Another environment runkeys created that waits for the sweeper, one of the same name in
    a sibling repository of the same owner, and one of that name a team made by hand in
    another repository: all three are still there after the retirement."""
    sandbox = github.sandbox
    sibling = sandbox.add_repository(f"{github.repo.owner}/lib")
    sandbox.update_installation(github.installation, repositories=[github.repo, sibling])
    store = service.secrets_for(github.repo.full_name)
    for name in ("ci-run-7", "ci-left-3"):
        store.create_environment(name)
    service.secrets_for(sibling.full_name).create_environment("ci-run-7")
    service.secrets_for(github.other_repo.full_name).create_environment("ci-run-7")
    mine = github.lease(environment="ci-run-7", environment_created=True)
    assert mine.secret is not None
    registered(service, github.repo, mine)
    store.put(mine.secret, "mine")
    left = github.lease(key_name="LEFT_TOKEN", environment="ci-left-3", environment_created=True)
    retired_before(service, registered(service, github.repo, left))
    twin = github.lease(
        repository=sibling.full_name, environment="ci-run-7", environment_created=True
    )
    retired_before(service, registered(service, sibling, twin))
    by_hand = github.lease(repository=github.other_repo.full_name, environment="ci-run-7")
    retired_before(service, registered(service, github.other_repo, by_hand))
    with service.ledger.begin() as conn:
        queue(conn, LeasesById((mine.id,)), actor="t", reason="t", now=service.clock())
    assert RevocationWorker(service).drain() == 1
    assert sandbox.environment_names(github.repo) == ["ci-left-3"]
    assert sandbox.environment_names(sibling) == ["ci-run-7"]
    assert sandbox.environment_names(github.other_repo) == ["ci-run-7"]
    # The sweeper's pass deletes the two left behind; the team's own stays.
    assert RevocationWorker(service).delete_environments() == 2
    assert sandbox.environment_names(github.repo) == []
    assert sandbox.environment_names(sibling) == []
    assert sandbox.environment_names(github.other_repo) == ["ci-run-7"]
    assert RevocationWorker(service).delete_environments() == 0


def test_a_pass_counts_what_it_deleted_and_goes_on_past_a_failure_a_kept_and_a_gone_one(
    service: Service, github: GitHub, clock: Clock
) -> None:
    """Five environments runkeys created, left behind by retired leases, in this order: one
    already deleted on GitHub, one GitHub says existed long before the lease named it, one
    GitHub fails to answer for, and two to delete. The pass deletes the two and says 2; the
    gone one is recorded as deleted (not tried again), the kept one as kept."""
    sandbox = github.sandbox
    store = service.secrets_for(github.repo.full_name)
    names = ["ci-a-gone", "ci-b-made-before", "ci-c-failing", "ci-d-run", "ci-e-run"]
    for name in names:
        store.create_environment(name)
    for name in names:
        # GitHub's time is real time: "ci-b" was made 10 minutes before its lease named it.
        at = datetime.now(UTC) + timedelta(minutes=10) if name == "ci-b-made-before" else None
        item = github.lease(
            key_name=f"KEY_{name[3]}".upper(), environment=name, environment_created=True
        )
        retired_before(service, registered(service, github.repo, item, at=at))
    store.delete_environment("ci-a-gone")  # by hand, after the lease ended
    sandbox.inject_fault("GET", r"/environments/ci-c-failing$", status=502, times=None)
    clock.advance(minutes=3)
    deleted_at = clock.now
    assert RevocationWorker(service).delete_environments() == 2
    assert sandbox.environment_names(github.repo) == ["ci-b-made-before", "ci-c-failing"]
    gone, made_before = row(service, github.repo, "ci-a-gone"), row(service, github.repo, names[1])
    assert (gone["state"], gone["deleted_at"]) == ("deleted", deleted_at)
    assert row(service, github.repo, "ci-d-run")["deleted_at"] == deleted_at
    assert (made_before["state"], made_before["deleted_at"]) == ("kept", None)
    assert "runkeys did not create it" in made_before["note"]
    assert row(service, github.repo, "ci-c-failing")["state"] == "present"  # tried next pass
    sandbox.clear_faults()
    sandbox.clear_requests()
    assert RevocationWorker(service).delete_environments() == 1
    assert sandbox.environment_names(github.repo) == ["ci-b-made-before"]
    asked = " ".join(r.path for r in sandbox.requests)
    assert "/ci-c-failing" in asked
    assert "/ci-a-gone" not in asked  # the gone and the kept one are not asked about again
    assert "/ci-b-made-before" not in asked
    assert RevocationWorker(service).delete_environments() == 0
