"""The whole life of a key, end to end, on each ledger engine. The action's console scripts mint
`random` tokens and `postgres` roles into a fresh `ci-pr-<n>` environment, and each lifetime is
retired by what should retire it, and by nothing else: the post step (`job`), the run's signed
`workflow_run` delivery (`run`; a cancelled run and a re-run too), the pull request's signed
`pull_request` delivery (`pr`), or the sweeper when a delivery was lost or a TTL ran out.
After each, the roles cannot log in, the secrets and the environment are gone, the ledger says
who retired each key and why, and nothing any process printed or stored holds a value."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.pull_request import PullRequest, logs_in
from tests.e2e.scheduled import Schedule
from tests.e2e.world import World
from tests.service.served import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def tidy(world: World) -> Iterator[None]:
    """A failed test must not leave live leases to the next one (whose sweeps count them): the
    operator's `runkeys revoke --all` for each repository it opened."""
    opened = len(world.opened)
    yield
    if world.postgres.members():
        for repository in world.opened[opened:]:
            if world.leases(repository):  # `revoke` fails for a repository with no lease
                world.command("revoke", "--all", "--repository", repository)
        wait_for(lambda: not world.postgres.members(), what="the leftovers revoked")


def expiry(world: World, repository: str, lease_ids: list[str]) -> datetime:
    """The latest of the leases' expiries by the ledger's own stamp (`keys-json` rounds it down
    to whole seconds), which the sweeper compares with its clock."""
    rows = world.leases(repository)
    stamps = [datetime.fromisoformat(rows[lease_id]["expires_at"]) for lease_id in lease_ids]
    return max(s if s.tzinfo else s.replace(tzinfo=UTC) for s in stamps)


def wait_past_expiry(world: World, repository: str, lease_ids: list[str]) -> None:
    """Until the real clock is past every one of the leases' expiries (the one test that lets a
    TTL run out for real; the others sweep on a clock moved past it: `World.sweep_at`)."""
    latest = expiry(world, repository, lease_ids)
    wait_for(lambda: datetime.now(UTC) > latest, timeout=60, what=f"the leases past {latest}")


def test_each_lifetime_ends_with_what_it_is_bound_to(world: World) -> None:
    pr = PullRequest.open(world, "life")
    issued = pr.mint("job", "run", "pr")
    pr.assert_alive(issued.keys)
    # The job ends: its post step retires the `job` keys, and only those.
    post = pr.post(issued)
    assert [line for line in post.lines if not line.startswith("::add-mask::")] == [
        "JOB_TOKEN: revoked and deleted its secret.",
        "JOB_DATABASE_URL: revoked and deleted its secret.",
        "Environment ci-pr-7 still holds secrets; it is kept.",
    ]
    pr.assert_retired(issued.of("job"))
    pr.assert_alive(issued.of("run") + issued.of("pr"))
    # The run completes: its signed delivery retires the `run` keys.
    assert pr.complete() == {"outcome": "queued", "queued": 2}
    pr.assert_retired(issued.of("run"))
    pr.assert_alive(issued.of("pr"))
    # The pull request closes: the `pr` keys go, and the environment runkeys created.
    assert pr.close() == {"outcome": "queued", "queued": 2}
    pr.assert_retired(issued.of("pr"))
    wait_for(lambda: not pr.environment_exists(), what="the environment deleted")
    assert world.sandbox.secret_names(pr.repo) == []
    pr.assert_ledger(issued)
    assert world.history(issued.of("pr")[1].lease_id) == [
        ("action", "registered"),
        ("webhook", "queued"),
        ("worker", "revoked"),
    ]
    world.scan()


def test_concurrent_runs_keep_the_later_runs_job_secrets(world: World) -> None:
    """Two runs of one pull request at once (no `concurrency` group) mint the same `job` keys
    into `ci-pr-7`. The earlier job ends first: its post step revokes its own keys and asks the
    service, which knows the later run's leases wrote the secrets since, so it keeps them; the
    later job's post step then deletes them with its own keys."""
    earlier = PullRequest.open(world, "concurrent")
    later = earlier.another_run()
    first = earlier.mint("job")
    second = later.mint("job")
    earlier.assert_alive(second.keys)  # the later run's values are in the secrets now
    post = earlier.post(first)
    assert [line for line in post.lines if not line.startswith("::")] == [
        "JOB_TOKEN: revoked; its secret was kept: a newer run's key wrote it since.",
        "JOB_DATABASE_URL: revoked; its secret was kept: a newer run's key wrote it since.",
        "Environment ci-pr-7 still holds secrets; it is kept.",
    ]
    first_role = next(key for key in first.keys if key.role)
    assert not logs_in(first_role)
    later.assert_alive(second.keys)
    for older, newer in zip(first.keys, second.keys, strict=True):
        assert older.name == newer.name
        assert world.history(older.lease_id) == [
            ("action", "registered"),
            ("post-step", "revoked"),
            ("post-step", "secret_kept"),
        ]
    # The later job ends: its keys and their secrets go.
    assert [line for line in later.post(second).lines if not line.startswith("::")] == [
        "JOB_TOKEN: revoked and deleted its secret.",
        "JOB_DATABASE_URL: revoked and deleted its secret.",
    ]
    later.assert_retired(second.keys)
    assert world.sandbox.secret_names(earlier.repo, earlier.environment) == []
    leases = world.leases(earlier.repo.full_name)
    earlier.assert_ledger(first, leases=leases)
    later.assert_ledger(second, leases=leases)
    assert world.history(second.keys[0].lease_id)[-1] == ("post-step", "revoked")
    assert earlier.complete()["queued"] == 0
    assert later.complete()["queued"] == 0
    world.sweep()  # the environment runkeys created, no live lease uses it any more
    wait_for(lambda: not earlier.environment_exists(), what="the environment deleted")
    world.scan()


def test_a_cancelled_run_and_its_rerun_each_retire_their_own_leases(world: World) -> None:
    pr = PullRequest.open(world, "rerun")
    first = pr.mint("run")
    # Attempt 1 is cancelled, its delivery is slow to arrive, and a re-run (attempt 2) mints the
    # same keys into the same environment.
    world.sandbox.set_run_status(pr.repo, pr.run.id, "completed", "cancelled")
    world.sandbox.set_run_status(pr.repo, pr.run.id, "in_progress", run_attempt=2)
    pr.new_job(2)
    second = pr.mint("run", attempt=2)
    first_role, second_role = (next(k for k in issued.keys if k.role) for issued in (first, second))
    assert logs_in(first_role)
    # Attempt 1's delivery arrives: attempt 1's leases go, attempt 2's stay.
    assert pr.deliver_completed(attempt=1) == {"outcome": "queued", "queued": 2}
    wait_for(lambda: not world.postgres.role_exists(first_role.role or ""), what="role dropped")
    leases: dict[str, dict[str, Any]] = {}

    def first_revoked() -> bool:
        leases.update(world.leases(pr.repo.full_name))
        return all(leases[key.lease_id]["state"] == "revoked" for key in first.keys)

    wait_for(first_revoked, what="attempt 1's leases revoked")
    assert not logs_in(first_role)
    assert logs_in(second_role)
    assert [leases[key.lease_id]["state"] for key in second.keys] == ["active", "active"]
    assert {leases[key.lease_id]["run_attempt"] for key in second.keys} == {2}
    assert pr.environment_exists()  # attempt 2's leases still use it
    # Attempt 2 wrote the same secrets since: retiring attempt 1 kept them, and says so.
    secrets_kept = all(pr.secret(key.name) == key.value for key in second.keys)
    assert secrets_kept
    for older, newer in zip(first.keys, second.keys, strict=True):
        assert older.name == newer.name
        assert world.history(older.lease_id)[-1] == ("worker", "secret_kept")
    # Attempt 2 completes: its own delivery retires the rest, and the environment.
    assert pr.complete("success", attempt=2) == {"outcome": "queued", "queued": 2}
    pr.assert_retired(second.keys)
    wait_for(lambda: not pr.environment_exists(), what="the environment deleted")
    leases = world.leases(pr.repo.full_name)
    pr.assert_ledger(first, leases=leases)
    pr.assert_ledger(second, leases=leases)
    world.scan()


def test_the_sweeper_retires_what_a_lost_delivery_or_a_ttl_left(world: World) -> None:
    lost, expiring, ongoing = (PullRequest.open(world, n) for n in ("lost", "ttl", "ongoing"))
    with ThreadPoolExecutor(3) as pool:  # three pull requests' jobs at once
        minted = [
            pool.submit(lost.mint, "run"),
            pool.submit(expiring.mint, "run", ttl="2s"),
            pool.submit(ongoing.mint, "run"),
        ]
        lost_keys, short, live = (future.result() for future in minted)
    # One run completes and its delivery is lost; one run goes on, but its keys' TTL runs out;
    # one run simply goes on.
    world.sandbox.set_run_status(lost.repo, lost.run.id, "completed", "success")
    lost.publish_logs()  # GitHub keeps the run's logs; only the delivery is lost
    wait_past_expiry(world, expiring.repo.full_name, [key.lease_id for key in short.keys])
    report = world.sweep()
    # GitHub was asked about the two runs with live keys; one of them is over.
    assert (report["runs_checked"], report["reconciled"], report["expired"]) == (2, 2, 2), report
    lost.assert_retired(lost_keys.keys)
    expiring.assert_retired(short.keys)
    ongoing.assert_alive(live.keys)
    wait_for(
        lambda: not lost.environment_exists() and not expiring.environment_exists(),
        what="the environments deleted",
    )
    leases = world.leases()
    lost.assert_ledger(lost_keys, {"run": "sweeper: GitHub reports run "}, leases=leases)
    expiring.assert_ledger(short, {"run": "sweeper: ttl"}, leases=leases)
    assert {leases[key.lease_id]["state"] for key in live.keys} == {"active"}
    assert ongoing.complete() == {"outcome": "queued", "queued": 2}
    ongoing.assert_retired(live.keys)
    world.scan()


def test_a_rotated_repository_secret_outlives_its_run_until_its_ttl(world: World) -> None:
    """`lifetime: ttl` into a repository secret, as a daily rotation writes it: neither the run's
    end nor its post step retires the key; the sweeper does, at its TTL, and keeps the secret
    that the next run has written since; the last key's expiry takes the secret too."""
    schedule = Schedule.open(world, "rotate")
    # Each TTL "runs out" on the sweeper's clock, moved past it: nothing waits for it.
    yesterday = schedule.rotate(ttl="10m")
    post = schedule.post(yesterday)
    assert post.masks  # the connection's password, masked before anything else
    assert post.lines[len(post.masks) :] == ["runkeys post: nothing to retire."]
    assert schedule.complete(yesterday)["queued"] == 0  # the run is over; the key is not
    assert schedule.secret() == yesterday.key.value
    assert logs_in(yesterday.key)
    today = schedule.rotate(ttl="1h")  # overwrites the repository secret
    assert schedule.secret() == today.key.value
    assert logs_in(yesterday.key)  # the two keys overlap
    yesterdays_end = expiry(world, schedule.repo.full_name, [yesterday.key.lease_id])
    assert world.sweep_at(yesterdays_end - timedelta(seconds=1))["expired"] == 0  # not yet
    assert world.sweep_at(yesterdays_end + timedelta(seconds=1))["expired"] == 1
    role = yesterday.key.role or ""
    wait_for(lambda: not world.postgres.role_exists(role), what="yesterday's role dropped")
    wait_for(
        lambda: world.leases(schedule.repo.full_name)[yesterday.key.lease_id]["state"] == "revoked",
        what="yesterday's lease revoked",
    )
    assert not logs_in(yesterday.key)
    assert logs_in(today.key)
    assert schedule.secret() == today.key.value  # kept: today's lease wrote it since
    assert world.history(yesterday.key.lease_id) == [
        ("action", "registered"),
        ("sweeper", "queued"),
        ("worker", "revoked"),
        ("worker", "secret_kept"),
    ]
    assert schedule.complete(today)["queued"] == 0
    # Today's key expires too: nothing newer wrote the secret, so it goes with its key.
    todays_end = expiry(world, schedule.repo.full_name, [today.key.lease_id])
    assert world.sweep_at(todays_end + timedelta(seconds=1))["expired"] == 1
    wait_for(lambda: schedule.secret() is None, what="the repository secret deleted")
    wait_for(lambda: not world.postgres.role_exists(today.key.role or ""), what="role dropped")
    assert not logs_in(today.key)
    leases = world.leases(schedule.repo.full_name)
    for rotation in (yesterday, today):
        lease = leases[rotation.key.lease_id]
        assert (lease["state"], lease["lifetime"]) == ("revoked", "ttl")
        assert lease["retire_reason"].startswith("sweeper: ttl"), lease
    assert world.history(today.key.lease_id)[-1] == ("worker", "revoked")
    world.scan()
