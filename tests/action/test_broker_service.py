"""Broker mode end to end (issue 15): the real action (its entry points, as the runner starts
them) against the real service app in this process, holding a policy file and its own
connections to the local PostgreSQL, MariaDB and Redis. The step holds neither; the service
mints, writes the environment's secrets with its App, and retires through its worker when the
post step, the run's completion and the pull request's close say so."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from handler.ledger.queue import LeasesById, queue
from handler.ledger.records import LeaseRecord
from handler.worker import RevocationWorker
from runkeys.leases import LeaseState
from tests.action.conftest import RUN_ID, GitHub
from tests.action.harness import Run
from tests.action.service import AUDIENCE, Service
from tests.action.test_broker import (
    PUBLIC_PARTS,
)
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
    github.sandbox.add_workflow_run(github.repo, run_id=RUN_ID, event="pull_request")
    claims = github.sandbox.run_claims(github.repo, RUN_ID)
    claims = replace(claims, ref=f"refs/pull/{PR}/merge", event_name="pull_request")
    github.step.pull_request_event(PR)
    github.step.base_env.update(github.sandbox.runner_oidc_env(claims))
    github.step.base_env["INPUT_SERVICE-URL"] = served.url
    github.step.base_env["INPUT_AUDIENCE"] = AUDIENCE
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
