"""A valid token of repository A is not a trusted one: what a lease says it may delete is
checked against GitHub's own metadata, with the service's clock, before anything is deleted.

Each attack is what a collaborator pushing a workflow change could send: a real OIDC token of
a run of A from the sandbox's issuer, registered through the real API. The secrets and
environments that must survive are real ones in the sandbox, read back afterwards. GitHub's
times are the sandbox's (real time); the service's clock is set around them, which is how a
registration comes before or after what GitHub did.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from msgspec.structs import replace
from sqlalchemy import select

from handler.ledger import tables
from handler.ledger.history import history
from handler.ownership import environment_kept_because, secret_kept_because
from handler.service import Service
from handler.sweeper import Sweeper
from handler.worker import RevocationWorker
from runkeys.github.secrets import EnvironmentFacts
from runkeys.leases import LeaseRequest, LeaseState
from runkeys_sandbox.server.state import Environment
from tests.service.conftest import GitHub
from tests.service.kit import Clock, assert_documented, body, js, stored

GITHUB_ANSWERS = 10  # minutes between the team's own write and the attack's registration


def running(app: Flask) -> Service:
    found: Service = app.extensions["runkeys"]
    return found


def register(client: FlaskClient, github: GitHub, *leases: LeaseRequest) -> Any:
    response = client.post("/v1/leases", json=body(*leases), headers=github.auth(github.claims()))
    assert_documented("POST", "/v1/leases", response.status_code, response.json)
    return response


def at(clock: Clock, minutes: float) -> datetime:
    """Set the service's clock `minutes` from GitHub's now (the sandbox's: real time)."""
    clock.now = datetime.now(UTC) + timedelta(minutes=minutes)
    return clock.now


def expire_and_retire(app: Flask, clock: Clock) -> None:
    """The leases' TTL passes: the sweeper queues them and the worker retires them."""
    clock.advance(hours=2)
    service = running(app)
    Sweeper(service).sweep(reconcile=False)
    RevocationWorker(service).drain()


def events(app: Flask, lease_id: str) -> list[tuple[str, str]]:
    with running(app).ledger.begin() as conn:
        return [(e.action, e.detail) for e in history(conn, lease_id)]


def environment_row(app: Flask, github: GitHub, name: str) -> dict[str, Any]:
    env = tables.environments
    with running(app).ledger.begin() as conn:
        row = conn.execute(
            select(env).where(env.c.repository_id == github.repo.id, env.c.name_key == name)
        ).mappings()
        (found,) = list(row)
    return dict(found)


# --- what a lease may name at all ------------------------------------------------------------


@pytest.mark.parametrize("secret_name", ["PROD_DEPLOY_TOKEN", "api_token", "API_TOKEN_"])
def test_a_lease_may_name_only_the_secret_named_after_its_key(
    client: FlaskClient, github: GitHub, secret_name: str
) -> None:
    lease = github.lease(key_name="API_TOKEN")
    assert lease.secret is not None
    attack = replace(lease, secret=replace(lease.secret, name=secret_name))
    response = register(client, github, attack)
    assert (response.status_code, js(response)["error"]) == (422, "invalid_lease")
    assert "its secret must be named API_TOKEN, after its key" in js(response)["message"]
    assert register(client, github, lease).status_code == 201  # the almost-same one is fine


@pytest.mark.parametrize(
    ("seconds", "status"), [(-3600, 422), (-1, 422), (0, 422), (2, 201)], ids=str
)
def test_a_lease_that_has_expired_by_the_services_clock_is_refused(
    client: FlaskClient, github: GitHub, clock: Clock, seconds: int, status: int
) -> None:
    """A past expiry would have the sweeper retire (and delete) at once what the lease names."""
    lease = github.lease(now=clock.now - timedelta(hours=2))
    lease = replace(lease, expires_at=clock.now + timedelta(seconds=seconds))
    response = register(client, github, lease)
    assert response.status_code == status
    if status == 422:
        assert js(response)["error"] == "invalid_expiry"
        assert "which has passed by this service's clock" in js(response)["message"]


@pytest.mark.parametrize(
    "key_name", ["\x1b[2J\x1b[31mOWNED", "API TOKEN", "GITHUB_TOKEN", "1ST", "A\nB", ""]
)
def test_a_key_name_follows_the_secret_name_rules(
    client: FlaskClient, github: GitHub, key_name: str
) -> None:
    lease = replace(github.lease(secret=False), key_name=key_name)
    response = register(client, github, lease)
    assert (response.status_code, js(response)["error"]) == (400, "invalid_lease")
    assert "key_name" in js(response)["message"]
    assert "\x1b" not in response.get_data(as_text=True)  # JSON escapes it; never raw


# --- secrets: deleted only when GitHub says runkeys wrote them ------------------------------


@pytest.mark.parametrize(
    ("written_before", "deleted"),
    [(GITHUB_ANSWERS, False), (2, False), (0.5, True), (-1, True)],
    ids=["10 min before", "2 min before", "30 s before (clock skew)", "after"],
)
def test_a_secret_last_written_before_the_lease_is_never_deleted(  # noqa: PLR0917
    app: Flask,
    client: FlaskClient,
    github: GitHub,
    clock: Clock,
    written_before: float,
    deleted: bool,
) -> None:
    """The team's repository secret API_TOKEN exists; a workflow on a branch registers a lease
    of key API_TOKEN (so its secret is API_TOKEN). When it retires, GitHub's `updated_at` says
    whether the value is the lease's: only a value written after its registration is."""
    store = running(app).secrets_for(github.repo.full_name)
    lease = github.lease(key_name="API_TOKEN", now=at(clock, written_before))
    assert lease.secret is not None
    if written_before > 0:
        store.put(lease.secret, "the team's own value")
        assert register(client, github, lease).status_code == 201
    else:
        assert register(client, github, lease).status_code == 201
        store.put(lease.secret, "the lease's value")
    expire_and_retire(app, clock)
    assert stored(running(app).ledger, lease.id).state is LeaseState.REVOKED
    names = github.sandbox.secret_names(github.repo)
    if deleted:
        assert names == []
        assert events(app, lease.id)[-1] == ("revoked", "revoked at the provider, secret deleted")
        return
    assert names == ["API_TOKEN"]
    assert github.sandbox.secret_value(github.repo, "API_TOKEN") == "the team's own value"
    action, detail = events(app, lease.id)[-1]
    assert action == "secret_kept"
    assert detail.startswith("secret kept: GitHub says it was last written at ")
    assert detail.endswith(": not a value runkeys wrote")


# --- environments: deleted only when GitHub shows runkeys made them, unprotected -------------


def test_an_environment_that_existed_before_the_first_lease_naming_it_is_kept(
    app: Flask, client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    """`production` exists with the team's API_TOKEN; a lease of key API_TOKEN claims the
    action created it. Neither the environment nor its secret is deleted."""
    store = running(app).secrets_for(github.repo.full_name)
    store.create_environment("production")
    lease = github.lease(environment="production", environment_created=True)
    assert lease.secret is not None
    store.put(lease.secret, "the team's own value")
    lease = replace(lease, issued_at=at(clock, GITHUB_ANSWERS))
    lease = replace(lease, expires_at=clock.now + timedelta(hours=1))
    assert register(client, github, lease).status_code == 201
    expire_and_retire(app, clock)
    assert "production" in github.sandbox.environment_names(github.repo)
    assert github.sandbox.secret_value(github.repo, "API_TOKEN", "production") == (
        "the team's own value"
    )
    row = environment_row(app, github, "production")
    assert row["state"] == "kept"
    assert row["note"].startswith("GitHub says it was created at ")
    assert row["note"].endswith(": runkeys did not create it")


def _wait_timer(env: Environment) -> None:
    env.wait_timer = 5


def _reviewers(env: Environment) -> None:
    env.reviewers = [{"type": "User", "id": 583231}]


def _branch_policy(env: Environment) -> None:
    env.deployment_branch_policy = {"protected_branches": True, "custom_branch_policies": False}


def _custom_rule(env: Environment) -> None:
    env.custom_rules = [{"id": 3, "app_slug": "deploy-gate"}]


@pytest.mark.parametrize(
    ("protect", "said"),
    [
        (_wait_timer, "a wait timer protection rule"),
        (_reviewers, "a required reviewers protection rule"),
        (_branch_policy, "a branch policy protection rule, a deployment branch policy"),
        (_custom_rule, "1 custom deployment protection rule(s)"),
    ],
    ids=["wait timer", "reviewers", "branch policy", "custom rule"],
)
def test_a_protected_environment_is_never_deleted(  # noqa: PLR0917
    app: Flask, client: FlaskClient, github: GitHub, clock: Clock, protect: Any, said: str
) -> None:
    """Made by the action after the registration, as runkeys' own are, but an admin has
    protected it since: it is somebody's now."""
    store = running(app).secrets_for(github.repo.full_name)
    lease = github.lease(now=at(clock, -5), environment="ci-run-7", environment_created=True)
    assert register(client, github, lease).status_code == 201
    store.create_environment("ci-run-7")
    with github.sandbox.world.lock:
        protect(github.repo.environments["ci-run-7"])
    expire_and_retire(app, clock)
    assert "ci-run-7" in github.sandbox.environment_names(github.repo)
    row = environment_row(app, github, "ci-run-7")
    assert (row["state"], row["note"]) == (
        "kept",
        f"it has {said}: runkeys deletes only environments without protection",
    )


def test_an_environment_no_lease_claims_to_have_created_is_never_deleted(
    app: Flask, client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    store = running(app).secrets_for(github.repo.full_name)
    lease = github.lease(now=at(clock, -5), environment="ci-run-8", environment_created=False)
    assert register(client, github, lease).status_code == 201
    store.create_environment("ci-run-8")  # e.g. a job of the run referenced it
    expire_and_retire(app, clock)
    assert "ci-run-8" in github.sandbox.environment_names(github.repo)
    assert environment_row(app, github, "ci-run-8")["state"] == "present"


def test_a_pull_requests_environment_is_compared_with_its_first_naming(
    app: Flask, client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    """`ci-pr-5` is created by the pull request's first run and reused by a later one: GitHub's
    `created_at` is before the later run's registration, but not before the first one's."""
    store = running(app).secrets_for(github.repo.full_name)
    first = github.lease(now=at(clock, -60), environment="ci-pr-5", environment_created=True)
    assert register(client, github, first).status_code == 201
    store.create_environment("ci-pr-5")
    second = github.lease(key_name="OTHER", now=at(clock, 30), environment="ci-pr-5")
    assert register(client, github, second).status_code == 201
    expire_and_retire(app, clock)
    assert "ci-pr-5" not in github.sandbox.environment_names(github.repo)
    assert environment_row(app, github, "ci-pr-5")["state"] == "deleted"


def test_an_environment_runkeys_deleted_and_someone_made_again_is_not_deleted_again(
    app: Flask, client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    """After runkeys deleted `ci-run-9`, a team made its own `ci-run-9`; a later lease
    claiming to have created it must not make it runkeys' again."""
    store = running(app).secrets_for(github.repo.full_name)
    first = github.lease(now=at(clock, -300), environment="ci-run-9", environment_created=True)
    assert register(client, github, first).status_code == 201
    store.create_environment("ci-run-9")
    expire_and_retire(app, clock)  # the service's clock is now 3 hours behind GitHub's
    assert "ci-run-9" not in github.sandbox.environment_names(github.repo)
    store.create_environment("ci-run-9")  # the team's own, now
    claims = github.lease(now=at(clock, GITHUB_ANSWERS), environment="ci-run-9")
    claims = replace(claims, environment_created=True)
    assert register(client, github, claims).status_code == 201
    expire_and_retire(app, clock)
    assert "ci-run-9" in github.sandbox.environment_names(github.repo)
    assert environment_row(app, github, "ci-run-9")["state"] == "kept"


def test_the_clock_skew_allowed_is_a_minute_each_way_at_its_edge() -> None:
    """Written a minute before the lease was registered (the runner's clock ahead): runkeys'
    own write, deleted; a second earlier, someone else's, kept. The same for an environment
    created before the first lease named it."""
    registered = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    minute, second = timedelta(minutes=1), timedelta(seconds=1)
    assert secret_kept_because(registered - minute, registered) is None
    assert secret_kept_because(registered - minute - second, registered) is not None
    facts = EnvironmentFacts(created_at=registered - minute, protections=())
    assert environment_kept_because(facts, registered) is None
    earlier = EnvironmentFacts(created_at=registered - minute - second, protections=())
    assert environment_kept_because(earlier, registered) is not None
