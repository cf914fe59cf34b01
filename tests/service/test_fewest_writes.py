"""GitHub's write budget bounds retiring (issue 16): the leases of an environment runkeys created
that retire together cost one provider revoke each and one environment DELETE, after the two
reads of GitHub's word on the environment (`handler.ownership`); a secret is deleted on its own
only where its environment stays. Counted from the sandbox's request log, on both ledgers."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from urllib.parse import quote

import msgspec
import pytest
from sqlalchemy import select

from handler.config import ServiceConfig
from handler.ledger import tables
from handler.ledger.completions import apply_completions, record_completion
from handler.ledger.history import history
from handler.ledger.queue import LeasesById, RunLeases, claim_due, queue
from handler.service import Service
from handler.worker import RevocationWorker
from runkeys.leases import LeaseRequest, LeaseState
from runkeys.oidc import RunIdentity
from runkeys_sandbox.server.recording import RecordedRequest, add_listener, remove_listener
from runkeys_sandbox.server.state import Repository
from tests.service.conftest import GitHub
from tests.service.kit import HTTP_PARAMS, Clock, TokenIssuer, identity, put, stored

KEYS = 10
HOLD = timedelta(seconds=30)


@pytest.fixture
def service(
    environ: dict[str, str], issuer: tuple[TokenIssuer, str], clock: Clock
) -> Iterator[Service]:
    _, url = issuer
    config = ServiceConfig.from_env({**environ, "RUNKEYS_CONNECTION_ISSUER": url})
    assert config.github is not None
    # A GitHub failure fails the attempt at once, so each call the test counts is made once.
    made = Service(replace(config, github=replace(config.github, retries=0)), clock=clock)
    yield made
    made.close()


def run_of(github: GitHub, run_id: int) -> RunIdentity:
    return replace(identity(github.repo.full_name, github.repo.id), run_id=run_id)


def keys(
    github: GitHub,
    tokens: TokenIssuer,
    environment: str,
    *,
    created: bool,
    prefix: str = "KEY",
    count: int = KEYS,
    repo: Repository | None = None,
) -> list[LeaseRequest]:
    """`count` leases of the `http` provider whose secrets are in `environment` (of this
    test's repository unless `repo` says which)."""
    return [
        github.lease(
            key_name=f"{prefix}_{i}",
            provider="http",
            connection="issuer",
            params=HTTP_PARAMS,
            reference=reference,
            environment=environment,
            environment_created=created,
            repository=(repo or github.repo).full_name,
        )
        for i, reference in enumerate(tokens.mint(count))
    ]


def written(service: Service, github: GitHub, items: list[LeaseRequest], run_id: int) -> None:
    """Registered for run `run_id` and their secrets written, as the action does."""
    who = run_of(github, run_id)
    put(service.ledger, who, *items, installation_id=github.installation.id, now=service.clock())
    store = service.secrets_for(github.repo.full_name)
    for item in items:
        assert item.secret is not None
        store.put(item.secret, f"value-of-{item.key_name}")


def complete(service: Service, github: GitHub, run_id: int) -> int:
    """The run's `completed` delivery, then the worker's drain; how many leases it retired.
    GitHub's request log holds only what the worker asked."""
    with service.ledger.begin() as conn:
        run = RunLeases(github.repo.id, run_id, 1, github.installation.id)
        record_completion(conn, run, reason="run completed", now=service.clock())
    github.sandbox.clear_requests()
    return RevocationWorker(service).drain()


def calls(github: GitHub) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in github.sandbox.requests]


def environment_calls(github: GitHub, name: str) -> list[tuple[str, str]]:
    """Reading GitHub's word on the environment (`environment_facts`), then deleting it."""
    url = f"/repos/{github.repo.full_name}/environments/{name}"
    return [("GET", url), ("GET", f"{url}/deployment_protection_rules"), ("DELETE", url)]


def secret_calls(github: GitHub, name: str, items: list[LeaseRequest]) -> list[tuple[str, str]]:
    """Each secret alone: when GitHub says it was written (`secret_written_at`), then DELETE,
    in the order the worker claims the leases (by id)."""
    url = f"/repos/{github.repo.full_name}/environments/{name}/secrets"
    return [
        (method, f"{url}/{item.key_name}")
        for item in sorted(items, key=lambda i: i.id)
        for method in ("GET", "DELETE")
    ]


def environment_row(service: Service, github: GitHub, name: str) -> tuple[str, str | None]:
    env = tables.environments
    with service.ledger.begin() as conn:
        found = conn.execute(
            select(env.c.state, env.c.note).where(
                env.c.repository_id == github.repo.id, env.c.name_key == name
            )
        ).one()
    return found.state, found.note


def last_detail(service: Service, lease_id: str) -> tuple[str, str]:
    with service.ledger.begin() as conn:
        last = history(conn, lease_id)[-1]
    return last.action, last.detail


def not_deleted(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The environments of the "environment not deleted" warnings, each checked to carry
    GitHub's answer (502) as its error."""
    found = [
        r.__dict__["fields"] for r in caplog.records if r.getMessage() == "environment not deleted"
    ]
    for fields in found:
        assert "502" in fields["error"], fields
    return [fields["environment"] for fields in found]


def test_a_run_s_environment_goes_in_one_delete_after_its_keys_are_revoked(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """10 keys of a run in the environment it created: 10 revokes at the provider, GitHub's
    two reads of the environment, one DELETE; no secret is asked about or deleted alone."""
    tokens, _ = issuer
    service.secrets_for(github.repo.full_name).create_environment("ci-run-71")
    items = keys(github, tokens, "ci-run-71", created=True)
    written(service, github, items, 71)
    assert complete(service, github, 71) == KEYS
    assert tokens.revoke_calls == {item.reference: 1 for item in items}
    assert calls(github) == environment_calls(github, "ci-run-71")
    assert "ci-run-71" not in github.sandbox.environment_names(github.repo)
    assert environment_row(service, github, "ci-run-71") == ("deleted", None)
    detail = "revoked at the provider, secret deleted with environment ci-run-71"
    for item in items:
        assert stored(service.ledger, item.id).state is LeaseState.REVOKED
        assert last_detail(service, item.id) == ("revoked", detail)


def test_an_environment_another_live_lease_uses_stays_and_only_the_retired_secrets_go(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """A second run's key lives in the same environment: the first run's 10 secrets are
    deleted one by one, GitHub is not asked about the environment, and it stays."""
    tokens, _ = issuer
    service.secrets_for(github.repo.full_name).create_environment("ci-shared")
    items = keys(github, tokens, "ci-shared", created=True)
    written(service, github, items, 72)
    (other,) = keys(github, tokens, "ci-shared", created=True, prefix="OTHER")[:1]
    written(service, github, [other], 73)
    assert complete(service, github, 72) == KEYS
    assert tokens.revoke_calls == {item.reference: 1 for item in items}
    assert calls(github) == secret_calls(github, "ci-shared", items)
    assert github.sandbox.secret_names(github.repo, "ci-shared") == ["OTHER_0"]
    assert environment_row(service, github, "ci-shared") == ("present", None)
    for item in items:
        assert last_detail(service, item.id) == (
            "revoked",
            "revoked at the provider, secret deleted",
        )
    # The other run's end is the environment's: now it goes, in one DELETE.
    assert complete(service, github, 73) == 1
    assert calls(github) == environment_calls(github, "ci-shared")
    assert "ci-shared" not in github.sandbox.environment_names(github.repo)


def test_a_hand_made_environment_gets_each_secret_deleted_and_stays(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """No lease says runkeys created it: its secrets go one by one, and it is never asked
    about nor deleted."""
    tokens, _ = issuer
    service.secrets_for(github.repo.full_name).create_environment("staging")
    items = keys(github, tokens, "staging", created=False)
    written(service, github, items, 74)
    assert complete(service, github, 74) == KEYS
    assert tokens.revoke_calls == {item.reference: 1 for item in items}
    assert calls(github) == secret_calls(github, "staging", items)
    assert "staging" in github.sandbox.environment_names(github.repo)
    assert github.sandbox.secret_names(github.repo, "staging") == []


def test_an_environment_github_says_is_not_runkeys_gets_each_secret_deleted_and_stays(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """The leases claim they created it, but GitHub made it 10 minutes before they were
    registered: after the two reads, each secret alone, and the environment is kept."""
    tokens, _ = issuer
    service.secrets_for(github.repo.full_name).create_environment("ci-claimed")
    with github.sandbox.world.lock:
        github.repo.environments["ci-claimed"].created_at -= 600
    items = keys(github, tokens, "ci-claimed", created=True)
    written(service, github, items, 75)
    assert complete(service, github, 75) == KEYS
    assert tokens.revoke_calls == {item.reference: 1 for item in items}
    reads = environment_calls(github, "ci-claimed")[:2]
    assert calls(github) == reads + secret_calls(github, "ci-claimed", items)
    assert "ci-claimed" in github.sandbox.environment_names(github.repo)
    assert github.sandbox.secret_names(github.repo, "ci-claimed") == []
    state, note = environment_row(service, github, "ci-claimed")
    assert state == "kept"
    assert note is not None
    assert "runkeys did not create it" in note


def test_a_failing_environment_delete_is_retried_later_and_the_leases_are_revoked(
    service: Service,
    github: GitHub,
    issuer: tuple[TokenIssuer, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    tokens, _ = issuer
    caplog.set_level(logging.WARNING, logger="runkeys.service")
    service.secrets_for(github.repo.full_name).create_environment("ci-run-76")
    items = keys(github, tokens, "ci-run-76", created=True)
    written(service, github, items, 76)
    github.sandbox.inject_fault("DELETE", r"/environments/ci-run-76$", status=502, times=None)
    assert complete(service, github, 76) == KEYS
    assert tokens.revoke_calls == {item.reference: 1 for item in items}
    assert calls(github) == environment_calls(github, "ci-run-76")  # no secret DELETE after it
    detail = (
        "revoked at the provider, its secret goes with environment ci-run-76 "
        "(its deletion failed; retried)"
    )
    for item in items:
        assert stored(service.ledger, item.id).state is LeaseState.REVOKED
        assert last_detail(service, item.id) == ("revoked", detail)
    assert environment_row(service, github, "ci-run-76") == ("present", None)
    # The operator's one clue: the warning says what GitHub answered.
    assert not_deleted(caplog) == ["ci-run-76"]
    # The sweeper's pass while GitHub still fails: the same warning, and nothing marked.
    caplog.clear()
    assert RevocationWorker(service).delete_environments() == 0
    assert not_deleted(caplog) == ["ci-run-76"]
    assert environment_row(service, github, "ci-run-76") == ("present", None)
    # The sweeper's pass: the environment is still a candidate, and goes now.
    github.sandbox.clear_faults()
    github.sandbox.clear_requests()
    assert RevocationWorker(service).delete_environments() == 1
    assert calls(github) == environment_calls(github, "ci-run-76")
    assert "ci-run-76" not in github.sandbox.environment_names(github.repo)
    assert environment_row(service, github, "ci-run-76") == ("deleted", None)


def test_a_key_not_revoked_keeps_the_environment_and_the_others_secrets_go_alone(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """One key of ten names a connection the worker lacks: its secret still carries a live
    credential, so the environment stays and the nine others' secrets are deleted one by one."""
    tokens, _ = issuer
    service.secrets_for(github.repo.full_name).create_environment("ci-run-77")
    items = keys(github, tokens, "ci-run-77", created=True)
    stuck = msgspec.structs.replace(items[0], connection="absent")
    written(service, github, [stuck, *items[1:]], 77)
    assert complete(service, github, 77) == KEYS
    assert tokens.revoke_calls == {item.reference: 1 for item in items[1:]}
    assert calls(github) == secret_calls(github, "ci-run-77", items[1:])
    assert github.sandbox.secret_names(github.repo, "ci-run-77") == [stuck.key_name]
    assert environment_row(service, github, "ci-run-77") == ("present", None)
    assert stored(service.ledger, stuck.id).state is LeaseState.FAILED


def test_an_environment_already_gone_costs_one_read(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """Someone deleted it (its secrets with it) before the run ended: GitHub's 404 to the
    first read ends it; the leases are revoked and the environment recorded deleted."""
    tokens, _ = issuer
    store = service.secrets_for(github.repo.full_name)
    store.create_environment("ci-run-78")
    items = keys(github, tokens, "ci-run-78", created=True)
    written(service, github, items, 78)
    store.delete_environment("ci-run-78")
    assert complete(service, github, 78) == KEYS
    assert tokens.revoke_calls == {item.reference: 1 for item in items}
    assert calls(github) == environment_calls(github, "ci-run-78")[:1]
    assert environment_row(service, github, "ci-run-78") == ("deleted", None)
    detail = "revoked at the provider, its secret went with environment ci-run-78 (already deleted)"
    for item in items:
        assert last_detail(service, item.id) == ("revoked", detail)


def test_github_failing_to_say_whose_the_environment_is_gets_each_secret_deleted(
    service: Service,
    github: GitHub,
    issuer: tuple[TokenIssuer, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without GitHub's word the environment is not deleted: each secret goes alone (asked
    about as always), the environment stays a candidate, and the sweeper's pass takes it."""
    tokens, _ = issuer
    caplog.set_level(logging.WARNING, logger="runkeys.service")
    service.secrets_for(github.repo.full_name).create_environment("ci-run-79")
    items = keys(github, tokens, "ci-run-79", created=True)
    written(service, github, items, 79)
    github.sandbox.inject_fault("GET", r"/environments/ci-run-79$", status=502, times=1)
    assert complete(service, github, 79) == KEYS
    assert tokens.revoke_calls == {item.reference: 1 for item in items}
    reads = environment_calls(github, "ci-run-79")[:1]
    assert calls(github) == reads + secret_calls(github, "ci-run-79", items)
    assert github.sandbox.secret_names(github.repo, "ci-run-79") == []
    assert environment_row(service, github, "ci-run-79") == ("present", None)
    assert not_deleted(caplog) == ["ci-run-79"]
    for item in items:
        assert last_detail(service, item.id) == (
            "revoked",
            "revoked at the provider, secret deleted",
        )
    github.sandbox.clear_requests()
    assert RevocationWorker(service).delete_environments() == 1
    assert calls(github) == environment_calls(github, "ci-run-79")


def left_over(
    service: Service, github: GitHub, tokens: TokenIssuer, name: str, run_id: int
) -> None:
    """An environment still a candidate: its run's lease is revoked but its DELETE failed."""
    service.secrets_for(github.repo.full_name).create_environment(name)
    written(service, github, keys(github, tokens, name, created=True, prefix="LEFT")[:1], run_id)
    github.sandbox.inject_fault("DELETE", rf"/environments/{name}$", status=502, times=None)
    assert complete(service, github, run_id) == 1
    github.sandbox.clear_faults()
    assert environment_row(service, github, name) == ("present", None)


def left_over_elsewhere(
    service: Service, github: GitHub, tokens: TokenIssuer, name: str, run_id: int
) -> None:
    """`left_over` in the installation's second repository, under the same name."""
    other = github.other_repo
    service.secrets_for(other.full_name).create_environment(name)
    (item,) = keys(github, tokens, name, created=True, prefix="ELSEWHERE", count=1, repo=other)
    who = replace(identity(other.full_name, other.id), run_id=run_id)
    put(
        service.ledger, who, item, installation_id=github.other_installation.id, now=service.clock()
    )
    assert item.secret is not None
    service.secrets_for(other.full_name).put(item.secret, "value-elsewhere")
    github.sandbox.inject_fault("DELETE", rf"{other.full_name}/environments/{name}$", status=502)
    with service.ledger.begin() as conn:
        run = RunLeases(other.id, run_id, 1, github.other_installation.id)
        record_completion(conn, run, reason="run completed", now=service.clock())
    assert RevocationWorker(service).drain() == 1
    github.sandbox.clear_faults()
    assert name in github.sandbox.environment_names(other)
    assert stored(service.ledger, item.id).state is LeaseState.REVOKED


def test_the_environment_is_asked_about_again_by_its_own_name_before_it_goes(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """A lease came to use the group's environment after the group was found deletable, while
    another environment of the repository is still a candidate (its DELETE failed): the
    second asking, by this environment's name, says no, and GitHub is not asked anything."""
    tokens, _ = issuer
    store = service.secrets_for(github.repo.full_name)
    left_over(service, github, tokens, "ci-left", 80)
    left_over_elsewhere(service, github, tokens, "ci-run-81", 86)

    store.create_environment("ci-run-81")
    items = keys(github, tokens, "ci-run-81", created=True)[:2]
    written(service, github, items, 81)
    worker = RevocationWorker(service)
    group = [stored(service.ledger, item.id) for item in items]
    env = worker._deletable_after(github.repo.id, "ci-run-81", group)
    assert env is not None
    newcomer = keys(github, tokens, "ci-run-81", created=True, prefix="NEW")[:1]
    written(service, github, newcomer, 82)
    github.sandbox.clear_requests()
    assert worker._delete_environment(env, group) is None
    assert calls(github) == []
    assert "ci-run-81" in github.sandbox.environment_names(github.repo)
    assert "NEW_0" in github.sandbox.secret_names(github.repo, "ci-run-81")
    assert environment_row(service, github, "ci-run-81") == ("present", None)


def test_in_an_environment_that_stays_each_secret_is_judged_and_fails_on_its_own(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """GitHub says runkeys did not create the environment, so each secret goes alone: one
    GitHub says was written before its lease is kept (and recorded so), one whose DELETE
    fails is tried again later with the failure recorded, the third is deleted."""
    tokens, _ = issuer
    store = service.secrets_for(github.repo.full_name)
    store.create_environment("ci-mixed")
    items = keys(github, tokens, "ci-mixed", created=True)[:3]
    written(service, github, items, 83)
    team, failing, plain = sorted(items, key=lambda i: i.id)
    with github.sandbox.world.lock:
        env = github.repo.environments["ci-mixed"]
        env.created_at -= 600
        env.secrets.secrets[team.key_name].updated_at -= 600
    github.sandbox.inject_fault(
        "DELETE", rf"/environments/ci-mixed/secrets/{failing.key_name}$", status=502, times=None
    )
    assert complete(service, github, 83) == 3
    assert tokens.revoke_calls == {item.reference: 1 for item in items}
    # the kept secret is only asked about; the failing one's DELETE is made once (no retries)
    reads = environment_calls(github, "ci-mixed")[:2]
    (ask_team, _) = secret_calls(github, "ci-mixed", [team])
    assert calls(github) == [*reads, ask_team, *secret_calls(github, "ci-mixed", [failing, plain])]
    assert github.sandbox.secret_names(github.repo, "ci-mixed") == sorted(
        [team.key_name, failing.key_name]
    )
    assert environment_row(service, github, "ci-mixed")[0] == "kept"

    assert stored(service.ledger, team.id).state is LeaseState.REVOKED
    with service.ledger.begin() as conn:
        team_events = [(e.action, e.detail) for e in history(conn, team.id)][-2:]
    assert team_events[0] == ("revoked", "revoked at the provider")
    assert team_events[1][0] == "secret_kept"
    assert team_events[1][1].endswith(": not a value runkeys wrote")

    held = stored(service.ledger, failing.id)
    assert held.state is LeaseState.REVOKING
    assert held.attempts == 1
    assert held.last_error is not None
    assert "502" in held.last_error
    assert last_detail(service, failing.id)[0] != "revoked"

    assert stored(service.ledger, plain.id).state is LeaseState.REVOKED
    assert last_detail(service, plain.id) == ("revoked", "revoked at the provider, secret deleted")


def test_a_lease_retired_on_its_own_takes_its_environment_and_only_that_one(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """`retire`, the path of a lease whose environment another live lease used when its batch
    was grouped (another worker's, retiring at the same time): once it is revoked and its
    secret deleted, the environment goes if it was the last lease in it; the repository's
    other candidate is left to the sweeper's pass."""
    tokens, _ = issuer
    left_over(service, github, tokens, "ci-left", 84)
    left_over_elsewhere(service, github, tokens, "ci-run-85", 87)
    service.secrets_for(github.repo.full_name).create_environment("ci-run-85")
    (item,) = keys(github, tokens, "ci-run-85", created=True)[:1]
    written(service, github, [item], 85)
    with service.ledger.begin() as conn:
        run = RunLeases(github.repo.id, 85, 1, github.installation.id)
        record_completion(conn, run, reason="run completed", now=service.clock())
        apply_completions(conn, limit=10)
        claim = claim_due(
            conn, now=service.clock(), limit=10, hold=service.config.worker.claim_timeout
        )
    (lease,) = claim.leases
    github.sandbox.clear_requests()
    RevocationWorker(service).retire(lease, claim.token)
    assert tokens.revoke_calls[item.reference] == 1
    secret = secret_calls(github, "ci-run-85", [item])
    assert calls(github) == secret + environment_calls(github, "ci-run-85")
    assert github.sandbox.environment_names(github.repo).count("ci-run-85") == 0
    assert "ci-left" in github.sandbox.environment_names(github.repo)
    assert environment_row(service, github, "ci-run-85") == ("deleted", None)
    assert environment_row(service, github, "ci-left") == ("present", None)
    assert "ci-run-85" in github.sandbox.environment_names(github.other_repo)
    assert stored(service.ledger, item.id).state is LeaseState.REVOKED
    assert last_detail(service, item.id) == ("revoked", "revoked at the provider, secret deleted")


def test_a_same_named_environment_in_another_repository_is_not_the_group_s(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """The second repository has a candidate of the same name; this repository's is still
    used by a live lease: the run's secrets are deleted one by one, and neither environment
    is asked about nor deleted."""
    tokens, _ = issuer
    left_over_elsewhere(service, github, tokens, "ci-pr-5", 88)
    service.secrets_for(github.repo.full_name).create_environment("ci-pr-5")
    items = keys(github, tokens, "ci-pr-5", created=True)[:2]
    written(service, github, items, 89)
    live = keys(github, tokens, "ci-pr-5", created=True, prefix="LIVE")[:1]
    written(service, github, live, 90)
    before = dict(tokens.revoke_calls)
    assert complete(service, github, 89) == 2
    assert tokens.revoke_calls == {**before, **{item.reference: 1 for item in items}}
    assert calls(github) == secret_calls(github, "ci-pr-5", items)
    assert github.sandbox.secret_names(github.repo, "ci-pr-5") == ["LIVE_0"]
    assert github.sandbox.secret_names(github.other_repo, "ci-pr-5") == ["ELSEWHERE_0"]
    for item in items:
        assert last_detail(service, item.id) == (
            "revoked",
            "revoked at the provider, secret deleted",
        )


def test_environments_whose_names_differ_but_in_upper_case_retire_each_with_its_own(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """`ci-straße` and `ci-strasse` are two environments (their lower cases differ, their
    upper cases do not): a run with a key in each deletes both, each in its own DELETE, and
    each lease is recorded with its own environment."""
    tokens, _ = issuer
    store = service.secrets_for(github.repo.full_name)
    names = ["ci-straße", "ci-strasse"]
    items = []
    for n, name in enumerate(names):
        store.create_environment(name)
        items += keys(github, tokens, name, created=True, prefix=f"KEY{n}")[:1]
    written(service, github, items, 91)
    assert complete(service, github, 91) == 2
    assert sorted(calls(github)) == sorted(
        call for name in names for call in environment_calls(github, quote(name))
    )
    assert set(names).isdisjoint(github.sandbox.environment_names(github.repo))
    for item, name in zip(items, names, strict=True):
        detail = f"revoked at the provider, secret deleted with environment {name}"
        assert last_detail(service, item.id) == ("revoked", detail)


def environment_of(call: tuple[str, str]) -> str:
    return call[1].split("/environments/")[1].split("/")[0]


def test_environments_claimed_a_few_leases_at_a_time_still_go_each_in_one_delete(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """Three pull requests of 10 keys closed at once, a worker claiming 4 at a time: each claim
    takes whole environments, so each environment costs its 10 revokes, GitHub's two reads and
    one DELETE, and no secret is deleted alone (a claim of 4 by id would split them)."""
    tokens, _ = issuer
    store = service.secrets_for(github.repo.full_name)
    names = ["ci-pr-1", "ci-pr-2", "ci-pr-3"]
    items: list[LeaseRequest] = []
    for n, name in enumerate(names):
        store.create_environment(name)
        ours = keys(github, tokens, name, created=True, prefix=f"PR{n}")
        written(service, github, ours, 120 + n)
        items += ours
    with service.ledger.begin() as conn:
        ids = tuple(item.id for item in items)
        queue(conn, LeasesById(ids), actor="test", reason="closed", now=service.clock())
    github.sandbox.clear_requests()
    worker = RevocationWorker(service)
    worker.settings = replace(worker.settings, batch_size=4)
    claimed = []
    while done := worker.run_once():
        claimed.append(done)
    assert claimed == [KEYS, KEYS, KEYS]
    assert tokens.revoke_calls == {item.reference: 1 for item in items}
    made = calls(github)
    assert len(made) == 3 * len(names)
    for name in names:
        assert [c for c in made if environment_of(c) == name] == environment_calls(github, name)
    assert set(names).isdisjoint(github.sandbox.environment_names(github.repo))
    for item in items:
        assert item.secret is not None
        detail = (
            f"revoked at the provider, secret deleted with environment {item.secret.environment}"
        )
        assert last_detail(service, item.id) == ("revoked", detail)


def sibling(github: GitHub) -> Repository:
    """Another repository of the same owner, in the same installation's account."""
    owner = github.repo.full_name.split("/")[0]
    return github.sandbox.add_repository(f"{owner}/app2")


def test_a_claim_takes_the_environment_s_leases_in_any_case_and_no_one_else_s(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """A claim of one lease brings in every due lease of its environment, named in any case
    (GitHub's names ignore it), and not the due leases of the same-named environment of a
    sibling repository, of an environment whose name differs in its last character, of one
    runkeys did not create, nor the environment's leases not yet due."""
    tokens, _ = issuer
    twin = sibling(github)

    def lease_in(name: str, *, created: bool = True, repo: Repository | None = None) -> str:
        where = repo or github.repo
        prefix = f"K{uuid.uuid4().hex[:8].upper()}"
        (item,) = keys(github, tokens, name, created=created, prefix=prefix, count=1, repo=where)
        who = replace(identity(where.full_name, where.id), run_id=130)
        put(service.ledger, who, item, installation_id=github.installation.id, now=service.clock())
        return item.id

    first = lease_in("ci-pr-7")
    group = {first, *(lease_in("ci-pr-7") for _ in range(3)), lease_in("CI-PR-7")}
    others = [
        lease_in("ci-pr-7", repo=twin),
        lease_in("ci-pr-8"),
        lease_in("ci-pr-"),
        lease_in("by-hand", created=False),
        lease_in("by-hand", created=False),
    ]
    later = lease_in("ci-pr-7")
    now = service.clock()
    with service.ledger.begin() as conn:
        # the first is due a second before the rest: it is the one the claim of 1 picks
        queue(conn, LeasesById((first,)), actor="t", reason="t", now=now - timedelta(seconds=1))
        rest = (*(group - {first}), *others)
        queue(conn, LeasesById(rest), actor="t", reason="t", now=now)
        queue(conn, LeasesById((later,)), actor="t", reason="t", now=now + timedelta(hours=1))
        claim = claim_due(conn, now=now, limit=1, hold=timedelta(seconds=30))
        assert {lease.id for lease in claim.leases} == group
        # The rest are claimed as the batch size says: one by one, alone.
        alone = []
        for _ in others:
            (lease,) = claim_due(conn, now=now, limit=1, hold=timedelta(seconds=30)).leases
            alone.append(lease.id)
        assert sorted(alone) == sorted(others)
        assert claim_due(conn, now=now, limit=1, hold=timedelta(seconds=30)).leases == []


def test_a_claim_holds_each_installation_s_first_turn_past_the_batch_size(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """A storm of environments in one installation, a run's environment in another: a claim of
    4 takes the storm's oldest environment whole and still the other installation's run, whole
    (its first turn); the next claim, the storm's next environment alone."""
    tokens, _ = issuer
    now = service.clock()

    def environment(name: str, *, repo: Repository, installation: int, at: datetime) -> set[str]:
        items = keys(github, tokens, name, created=True, repo=repo)
        who = replace(identity(repo.full_name, repo.id), run_id=140)
        ids = put(service.ledger, who, *items, installation_id=installation, now=now)
        with service.ledger.begin() as conn:
            queue(conn, LeasesById(tuple(ids)), actor="t", reason="t", now=at)
        return set(ids)

    earlier = now - timedelta(seconds=1)
    storm = [
        environment(f"ci-pr-{n}", repo=github.repo, installation=github.installation.id, at=earlier)
        for n in range(3)
    ]
    quiet = environment(
        "ci-run-1", repo=github.other_repo, installation=github.other_installation.id, at=now
    )
    with service.ledger.begin() as conn:
        first = {lease.id for lease in claim_due(conn, now=now, limit=4, hold=HOLD).leases}
        second = {lease.id for lease in claim_due(conn, now=now, limit=4, hold=HOLD).leases}
    assert quiet <= first
    assert [len(first - quiet), len(second)] == [KEYS, KEYS]
    assert sum(1 for env in storm if env in (first - quiet, second)) == 2


def paced_environ(environ: dict[str, str], url: str, *, batch_size: int) -> dict[str, str]:
    return {
        **environ,
        "RUNKEYS_CONNECTION_ISSUER": url,
        "RUNKEYS_GITHUB_WRITES_PER_MINUTE": "10",
        "RUNKEYS_GITHUB_TIME_FACTOR": "15",  # a GitHub minute in 4 s
        "RUNKEYS_WORKER_BATCH_SIZE": str(batch_size),
    }


def staged(
    setup: Service,
    github: GitHub,
    tokens: TokenIssuer,
    name: str,
    *,
    repo: Repository,
    installation: int,
    due: datetime,
) -> list[LeaseRequest]:
    """A run's keys in its own environment, written and registered by `setup` (unpaced: the
    paced service's budget is for the worker's calls only), due at `due`."""
    items = keys(github, tokens, name, created=True, prefix="K" + name[-1], repo=repo)
    store = setup.secrets_for(repo.full_name)
    store.create_environment(name)
    who = replace(identity(repo.full_name, repo.id), run_id=150)
    put(setup.ledger, who, *items, installation_id=installation, now=due)
    for item in items:
        assert item.secret is not None
        store.put(item.secret, "value")
    with setup.ledger.begin() as conn:
        queue(conn, LeasesById(tuple(i.id for i in items)), actor="t", reason="t", now=due)
    return items


def test_while_a_claim_waits_for_its_installation_s_budget_others_environments_go(
    environ: dict[str, str], github: GitHub, issuer: tuple[TokenIssuer, str], clock: Clock
) -> None:
    """The claim holds one environment of an installation whose minute of writes is spent
    (its second environment is due too); the other installation's two runs come due after the
    claim was taken. The worker claims and retires the other's environments meanwhile, one
    claim each, and revokes the waiting installation's second environment's keys ahead (its
    DELETE left for when the budget allows), then deletes its own once the budget allows: each
    in one DELETE, the waiting one's last, each key revoked once."""
    tokens, url = issuer
    paced = paced_environ(environ, url, batch_size=4)
    # Staged unpaced (the paced service's budget is for the worker's calls only).
    setup = Service(ServiceConfig.from_env({**environ, "RUNKEYS_CONNECTION_ISSUER": url}))
    other, quiet_installation = github.other_repo, github.other_installation.id

    def run(name: str, repo: Repository, installation: int, due: datetime) -> list[LeaseRequest]:
        return staged(setup, github, tokens, name, repo=repo, installation=installation, due=due)

    taken = clock()
    busy = run("ci-pr-1", github.repo, github.installation.id, taken - timedelta(seconds=1))
    waiting = run("ci-pr-2", github.repo, github.installation.id, taken)
    later = taken + timedelta(seconds=1)  # due after the claim is taken
    quiet = [run(f"ci-run-{n}", other, quiet_installation, later) for n in (3, 4)]
    setup.close()
    service = Service(ServiceConfig.from_env(paced), clock=clock)
    clock.now = taken

    # The claim is taken before the first revoke; the quiet runs come due after it.
    def come_due() -> None:
        clock.advance(seconds=2)

    tokens.on_revoke = come_due
    pace = service.pacing.of(github.installation.id)
    for _ in range(10):  # the busy installation's other writes this minute
        with pace.request(write=True):
            pass
    assert pace.ready_in(write=True) > 2
    github.sandbox.clear_requests()
    try:
        assert RevocationWorker(service).run_once() == 3 * KEYS
    finally:
        service.close()
    deleted = [path for method, path in calls(github) if method == "DELETE"]
    assert sorted(deleted[:2]) == [
        f"/repos/{other.full_name}/environments/ci-run-{n}" for n in (3, 4)
    ]
    assert deleted[2:] == [f"/repos/{github.repo.full_name}/environments/ci-pr-1"]
    done = busy + quiet[0] + quiet[1]
    assert tokens.revoke_calls == {item.reference: 1 for item in done + waiting}
    for item in done:
        assert stored(service.ledger, item.id).state is LeaseState.REVOKED
    for item in waiting:  # dead at the provider, its secret's deletion still to do
        assert stored(service.ledger, item.id).state is LeaseState.REVOKING
        assert last_detail(service, item.id) == (
            "provider_revoked",
            "revoked at the provider; its secret waits for GitHub's budget",
        )
    assert "ci-pr-2" in github.sandbox.environment_names(github.repo)


ENVIRONMENTS = 4


def test_a_paced_installation_s_keys_all_die_at_their_providers_before_its_second_delete(
    environ: dict[str, str], github: GitHub, issuer: tuple[TokenIssuer, str], clock: Clock
) -> None:
    """Four environments of one installation due at once, claimed one at a time, GitHub's
    minute nearly spent: the first environment goes at once; while the second's DELETE waits
    for the budget, the worker claims the others and revokes their keys at the provider, so
    all 40 keys are dead before the second DELETE; the others' DELETEs come once the budget
    allows, one each, and no key is revoked twice."""
    tokens, url = issuer
    setup = Service(ServiceConfig.from_env({**environ, "RUNKEYS_CONNECTION_ISSUER": url}))
    installation = github.installation.id
    names = [f"ci-pr-{n}" for n in range(ENVIRONMENTS)]
    items = [
        staged(setup, github, tokens, n, repo=github.repo, installation=installation, due=clock())
        for n in names
    ]
    setup.close()
    service = Service(
        ServiceConfig.from_env(paced_environ(environ, url, batch_size=KEYS)), clock=clock
    )
    pace = service.pacing.of(installation)
    for _ in range(9):  # the installation's other writes this minute: one is left
        with pace.request(write=True):
            pass
    github.sandbox.clear_requests()
    revoked_by_delete: list[int] = []  # at each environment DELETE, how many keys were revoked

    def on_request(entry: RecordedRequest) -> None:
        if entry.method == "DELETE" and "/environments/" in entry.path:
            revoked_by_delete.append(sum(tokens.revoke_calls.values()))

    add_listener(on_request)
    try:
        RevocationWorker(service).drain()
    finally:
        remove_listener(on_request)
        service.close()
    every = [item for env in items for item in env]
    assert revoked_by_delete == [KEYS] + [ENVIRONMENTS * KEYS] * (ENVIRONMENTS - 1)
    assert tokens.revoke_calls == {item.reference: 1 for item in every}
    assert set(names).isdisjoint(github.sandbox.environment_names(github.repo))
    assert github.sandbox.rate_limit_refusals() == {}
    for item in every:
        assert item.secret is not None
        detail = (
            f"revoked at the provider, secret deleted with environment {item.secret.environment}"
        )
        assert last_detail(service, item.id) == ("revoked", detail)


def test_a_worker_gone_after_its_revokes_ahead_leaves_only_the_deletion_to_the_next(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """A worker revokes an environment's keys ahead of its DELETE and is gone before the
    DELETE: the ledger says the keys are dead and the deletion is still to do, so the next
    worker deletes the environment once and revokes none again; a key of the same environment
    not revoked ahead (queued later) is revoked by it, once."""
    tokens, _ = issuer
    installation = github.installation.id
    name = "ci-pr-170"
    service.secrets_for(github.repo.full_name).create_environment(name)
    items = keys(github, tokens, name, created=True)
    late = keys(github, tokens, name, created=True, prefix="LATE", count=1)
    written(service, github, items + late, 170)
    with service.ledger.begin() as conn:
        ids = tuple(item.id for item in items)
        queue(conn, LeasesById(ids), actor="t", reason="t", now=service.clock())
    github.sandbox.clear_requests()
    assert RevocationWorker(service)._revoke_ahead(frozenset({installation})) == KEYS
    assert tokens.revoke_calls == {item.reference: 1 for item in items}
    assert calls(github) == []  # nothing asked of GitHub yet
    assert name in github.sandbox.environment_names(github.repo)
    for item in items:
        assert stored(service.ledger, item.id).state is LeaseState.REVOKING
    # Each is revoked ahead once, and only for its own installation.
    assert RevocationWorker(service)._revoke_ahead(frozenset({installation})) == 0
    assert RevocationWorker(service)._revoke_ahead(frozenset({installation + 1})) == 0
    with service.ledger.begin() as conn:
        queue(conn, LeasesById((late[0].id,)), actor="t", reason="t", now=service.clock())
    assert RevocationWorker(service).drain() == KEYS + 1
    assert tokens.revoke_calls == {item.reference: 1 for item in items + late}
    assert calls(github) == environment_calls(github, name)
    for item in items + late:
        detail = f"revoked at the provider, secret deleted with environment {name}"
        assert last_detail(service, item.id) == ("revoked", detail)


def test_a_claim_retired_without_its_revokes_made_first_revokes_each_itself(
    service: Service, github: GitHub, issuer: tuple[TokenIssuer, str]
) -> None:
    """`retire_all` told nothing of revokes made (its `revoked` left out) revokes each lease
    itself: a run's environment goes in one DELETE after its 10 revokes; in another, one key
    names a connection the worker lacks, so it fails and stays, and the nine others' secrets
    are deleted one by one."""
    tokens, _ = issuer
    store = service.secrets_for(github.repo.full_name)
    for name in ("ci-run-160", "ci-run-161"):
        store.create_environment(name)
    plain = keys(github, tokens, "ci-run-160", created=True, prefix="PLAIN")
    items = keys(github, tokens, "ci-run-161", created=True)
    stuck = msgspec.structs.replace(items[0], connection="absent")
    written(service, github, [*plain, stuck, *items[1:]], 160)
    now = service.clock()
    with service.ledger.begin() as conn:
        ids = tuple(i.id for i in plain + items)
        queue(conn, LeasesById(ids), actor="t", reason="t", now=now)
        claim = claim_due(conn, now=now, limit=2 * KEYS, hold=HOLD)
    assert len(claim.leases) == 2 * KEYS
    github.sandbox.clear_requests()
    RevocationWorker(service).retire_all(claim.leases, claim.token)
    assert tokens.revoke_calls == {item.reference: 1 for item in plain + items[1:]}
    made = calls(github)
    assert [c for c in made if environment_of(c) == "ci-run-160"] == environment_calls(
        github, "ci-run-160"
    )
    assert [c for c in made if environment_of(c) == "ci-run-161"] == secret_calls(
        github, "ci-run-161", items[1:]
    )
    assert "ci-run-160" not in github.sandbox.environment_names(github.repo)
    assert github.sandbox.secret_names(github.repo, "ci-run-161") == [stuck.key_name]
    for item in plain:
        detail = "revoked at the provider, secret deleted with environment ci-run-160"
        assert last_detail(service, item.id) == ("revoked", detail)
    for item in items[1:]:
        assert last_detail(service, item.id) == (
            "revoked",
            "revoked at the provider, secret deleted",
        )
    failed = stored(service.ledger, stuck.id)
    assert failed.state is LeaseState.FAILED
    assert failed.last_error is not None
    assert "RUNKEYS_CONNECTION_ABSENT" in failed.last_error
