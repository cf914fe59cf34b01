"""Broker mode end to end (issue 15): the real action (its entry points, as the runner starts
them) against the real service app in this process, holding a policy file and its own
connections to the local PostgreSQL, MariaDB and Redis. The step holds neither; the service
mints, writes the environment's secrets with its App, and retires through its worker when the
post step, the run's completion and the pull request's close say so."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from handler.ledger.queue import LeasesById, queue
from handler.ledger.records import LeaseRecord
from handler.worker import RevocationWorker
from runkeys.leases import LeaseState
from tests.action.conftest import RUN_ID, GitHub
from tests.action.harness import MASK, Run, unescape
from tests.action.service import Service
from tests.action.test_broker import (
    LOCAL_ONLY,
    PUBLIC_PARTS,
    assert_masked_before_anything_else,
    pull_request_job,
    run_seen,
)
from tests.encoded_forms import encoded_forms
from tests.providers.harness_mysql import connect_url
from tests.service import kit
from tests.service.attack_kit import BACKENDS, connections

PR = 23
ENVIRONMENT = f"ci-pr-{PR}"
MISSING_ROLE = "rk_test_no_such_role"  # the policy allows it; the server has no such role
KEYS = """\
PG_URL: {provider: postgres, connection: ci_db, ttl: 30m, lifetime: job}
MY_URL: {provider: mysql, connection: ci_my, ttl: 30m, lifetime: run}
CACHE_URL: {provider: redis, connection: ci_cache, ttl: 30m, lifetime: pr,
  categories: ['@read'], keys: ['app:*']}
API_TOKEN: {provider: random, ttl: 30m, lifetime: job}
"""
POLICY = f"""\
version: 1
rules:
  - name: app-ci
    match:
      repository: octo/app
      event_name: pull_request
    max_keys: 4
    destinations:
      job: true
      environments: ["ci-pr-*"]
    allow:
      - provider: postgres
        connection: ci_db
        max_ttl: 1h
        grant: [{MISSING_ROLE}]
      - provider: mysql
        connection: ci_my
        max_ttl: 1h
      - provider: redis
        connection: ci_cache
        max_ttl: 1h
        categories: ["@read"]
        key_prefixes: ["app:"]
      - provider: random
        max_ttl: 1h
"""


@pytest.fixture
def service(github: GitHub, tmp_path: Path) -> Iterator[Service]:
    """The service as a platform team runs it: the policy and the admin connections are its
    own settings. The step is a pull request's job with `id-token: write` and nothing else."""
    policy = tmp_path / "policy.yml"
    policy.write_text(POLICY)
    settings = connections() | {"RUNKEYS_POLICY_FILE": str(policy)}
    served = Service(github.sandbox, github.app, tmp_path / "service", settings=settings)
    pull_request_job(github, served.url, PR)
    try:
        yield served
    finally:
        # Whatever a failed test left: retired by the service's own worker, as the sweeper would.
        live = [x.id for x in served.all_leases() if x.state is LeaseState.ACTIVE]
        if live:
            running = served.app.extensions["runkeys"]
            with running.ledger.begin() as conn:
                queue(
                    conn,
                    LeasesById(tuple(live)),
                    actor="test",
                    reason="cleanup",
                    now=running.clock(),
                )
            drain(served)
        served.stop()


def drain(service: Service) -> None:
    RevocationWorker(service.app.extensions["runkeys"]).drain()


def exists(lease: LeaseRecord) -> bool:
    """The minted account, seen with the admin connection (a random key has none)."""
    backend = BACKENDS.get(lease.provider)
    return backend is not None and lease.label is not None and backend.exists(lease.label)


def secret_values(run: Run) -> list[str]:
    """The exported values that are secret: every key's value and its parts but where it
    logs in (host, port, database)."""
    names = {"PG_URL", "MY_URL", "CACHE_URL", "API_TOKEN"}
    return [
        value
        for name, value in run.env.items()
        if name in names or name.rpartition("_")[2] not in PUBLIC_PARTS
    ]


def test_broker_mode_mints_into_the_pull_requests_environment_and_retires_by_lifetime(
    github: GitHub, service: Service
) -> None:
    run, seen = run_seen(github, {"keys": KEYS, "environment": "ci-pr-{pr}"})
    assert run.returncode == 0, [*run.lines, run.stderr]
    # The env the action process saw: no App key, no token input, no connection URL.
    assert not [name for name in seen if name in LOCAL_ONLY or "CONNECTION" in name.upper()]
    assert not [name for name, value in seen.items() if "PRIVATE KEY" in value]
    assert not [name for name, value in seen.items() if "://" in value and "@" in value]
    leases = service.leases()
    assert sorted(leases) == ["API_TOKEN", "CACHE_URL", "MY_URL", "PG_URL"]
    assert {
        (x.run_id, x.pr_number, x.secret.environment if x.secret else None) for x in leases.values()
    } == {(RUN_ID, PR, ENVIRONMENT)}
    assert_masked_before_anything_else(run, secret_values(run))
    run.assert_nowhere(secret_values(run))
    # The real clients log in with what the step exported, as the accounts the ledger names.
    with psycopg.connect(run.env["PG_URL"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (leases["PG_URL"].label,)
    # A key with no grant may log in, not use the URL's database: log in without one.
    login = urllib.parse.urlsplit(run.env["MY_URL"])._replace(path="").geturl()
    with connect_url(login) as mysql, mysql.cursor() as cursor:
        cursor.execute("SELECT CURRENT_USER()")
        assert cursor.fetchone() == (f"{leases['MY_URL'].label}@%",)
    cache = redis.Redis.from_url(run.env["CACHE_URL"])
    assert urllib.parse.urlsplit(run.env["CACHE_URL"]).username == leases["CACHE_URL"].label
    assert cache.get("app:absent") is None  # logged in, and may read under app:
    cache.close()
    # The environment's secrets hold the same values, written by the service's App; every
    # GitHub call was the App's (the step holds no credential to make one).
    for name in leases:
        assert github.secret(name, ENVIRONMENT) == run.env[name]
    callers = {r.caller for r in github.sandbox.requests if not r.path.startswith("/_services/")}
    assert callers == {"app", "installation"}
    assert json.loads(run.state["broker"])["retire"] == "job"

    # The post step: the service retires the `job` keys (its worker revokes, deletes secrets).
    post = github.step.run({}, extra_env=github.step.post_env(run), post=True)
    assert post.returncode == 0
    assert post.annotations("warning") == []
    assert service.faults.statuses("/v1/keys/retire") == [200]
    drain(service)
    assert states(service) == {
        "PG_URL": "revoked",
        "API_TOKEN": "revoked",
        "MY_URL": "active",
        "CACHE_URL": "active",
    }
    assert not exists(leases["PG_URL"])
    assert exists(leases["MY_URL"])
    assert exists(leases["CACHE_URL"])
    assert sorted(github.sandbox.secret_names(github.repo, ENVIRONMENT)) == [
        "CACHE_URL",
        "MY_URL",
    ]

    # The run completes: its `run` key goes.
    deliver(
        github,
        service,
        "workflow_run",
        kit.workflow_run_completed(
            github.repo.id, github.repo.full_name, RUN_ID, 1, github.installation.id
        ),
    )
    assert states(service)["MY_URL"] == "revoked"
    assert states(service)["CACHE_URL"] == "active"
    assert not exists(leases["MY_URL"])

    # The pull request closes: its `pr` key goes, and the environment the service created.
    deliver(
        github,
        service,
        "pull_request",
        kit.pull_request_closed(github.repo.id, github.repo.full_name, PR, github.installation.id),
    )
    assert set(states(service).values()) == {"revoked"}
    assert not exists(leases["CACHE_URL"])
    assert ENVIRONMENT not in github.sandbox.environment_names(github.repo)


def states(service: Service) -> dict[str, str]:
    return {name: lease.state.value for name, lease in service.leases().items()}


def deliver(github: GitHub, service: Service, event: str, payload: object) -> None:
    """A webhook delivery, signed as GitHub signs the App's; then the worker's turn."""
    answer = github.sandbox.deliver(f"{service.url}/webhook", event, payload, app=github.app)
    assert answer.status_code in (200, 202), answer.text
    drain(service)


def test_a_key_the_policy_denies_is_named_in_the_annotation_and_nothing_is_minted(
    github: GitHub, service: Service
) -> None:
    over = KEYS.replace("ci_my, ttl: 30m", "ci_my, ttl: 2h")  # the rule's max_ttl is 1h
    run = github.step.run({"keys": over, "environment": "ci-pr-{pr}"})
    assert run.returncode == 1
    ((_, message),) = run.annotations("error")
    # The service's `key` field, read by the action: the annotation names the key once.
    assert "key MY_URL: policy_denied: denied by app-ci: ttl:" in message, message
    assert "MY_URL: MY_URL" not in message
    assert "policy" in message  # the fix: the service's policy
    assert service.faults.statuses("/v1/keys") == [403]
    assert service.all_leases() == []
    assert github.sandbox.environment_names(github.repo) == []
    assert json.loads(run.state["broker"])["retire"] == "none"
    assert run.env == {}
    assert run.outputs == {}


def test_a_key_that_fails_to_mint_is_named_and_the_request_is_rolled_back(
    github: GitHub, service: Service
) -> None:
    missing = KEYS.replace("ci_db, ttl: 30m", f"ci_db, grant: [{MISSING_ROLE}], ttl: 30m")
    run = github.step.run({"keys": missing, "environment": "ci-pr-{pr}"})
    assert run.returncode == 1
    ((_, message),) = run.annotations("error")
    assert "key PG_URL: keys_not_issued: minting failed" in message, message
    assert {x.state for x in service.all_leases()} <= {LeaseState.REVOKED}
    assert not [x for x in service.all_leases() if exists(x)]
    assert github.sandbox.environment_names(github.repo) == []


def test_a_retried_step_whose_answer_was_lost_gets_409_and_the_keys_are_retired(
    github: GitHub, service: Service
) -> None:
    """The service grants; a proxy loses the answer; the action's retry (same request id, a
    fresh token) is told 409: no value can be sent again, so the step asks to retire them."""
    service.faults.fail("/v1/keys", 502, after=True)
    run = github.step.run({"keys": KEYS, "environment": "ci-pr-{pr}"})
    assert run.returncode == 1
    assert service.faults.statuses("/v1/keys") == [502, 409]
    ((_, message),) = run.annotations("error")
    assert "granted this step's request on an attempt whose answer was lost" in message
    assert "request_repeated" in message
    assert "re-run the job" in message
    # The values the service wrote into the environment, which the step never got.
    leases = service.leases()
    values = [github.secret(name, ENVIRONMENT) for name in leases]
    written = [v for v in values if v]
    assert len(written) == 4
    forms = [f for v in written for f in encoded_forms(v) if len(f) >= 6]
    control = "x " + json.dumps(written[0]) + " y"
    assert any(form in control for form in forms)  # the scan finds a value when it is there
    texts = {"stdout": "\n".join(x for x in run.lines if not x.startswith(MASK)), **run.files}
    texts["stderr"] = run.stderr
    for where, text in texts.items():
        assert not [f for f in forms if f in text or f in unescape(text)], where
    # Asked at once (`all`), not left to the post step.
    assert json.loads(run.state["broker"])["retire"] == "none"
    assert service.faults.statuses("/v1/keys/retire") == [200]
    drain(service)
    assert set(states(service).values()) == {"revoked"}
    assert not [x for x in leases.values() if exists(x)]
    assert github.sandbox.environment_names(github.repo) == []
