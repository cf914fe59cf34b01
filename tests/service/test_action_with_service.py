"""What runkeys is for still works with references bound to labels: the action's entry point
mints postgres, mysql, redis and random keys and registers them with the real service, which
accepts each reference; when the run completes, the worker retires every credential."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from handler.ledger.leases import LeaseFilter, find
from handler.worker import RevocationWorker
from runkeys.leases import LeaseState
from runkeys_sandbox.launch import ThreadServer
from tests.action.harness import Step
from tests.service import kit
from tests.service.attack_kit import (
    BACKENDS,
    Backend,
    armed_service,
    connections,
    ledger,
)
from tests.service.conftest import GitHub
from tests.service.kit import AUDIENCE, Clock, stored


@pytest.fixture
def service(github: GitHub, tmp_path: Path, clock: Clock) -> Iterator[Flask]:
    with armed_service(github, tmp_path, clock) as made:
        yield made


E2E_KEYS = (
    "DATABASE_URL: {provider: postgres, connection: ci_db, ttl: 30m}\n"
    "MYSQL_URL: {provider: mysql, connection: ci_my, ttl: 30m}\n"
    "CACHE_URL: {provider: redis, connection: ci_cache, keys: ['e2e:*'], categories: [read]}\n"
    "API_TOKEN: {provider: random, ttl: 30m}\n"
)


def test_the_action_issues_through_the_service_and_the_run_retires_it(
    github: GitHub, service: Flask, tmp_path: Path
) -> None:
    """The action's entry point mints with the labels it registers, the service accepts each
    reference, and when the run completes the worker retires every credential."""
    claims = github.claims()
    server = ThreadServer(service)
    step = Step(tmp_path / "step", repository=github.repo.full_name, run_id=claims.run_id)
    step.base_env.update(github.sandbox.runner_oidc_env(claims))
    step.base_env["GITHUB_REPOSITORY_ID"] = str(github.repo.id)
    minted: list[tuple[Backend, str]] = []
    try:
        run = step.run(
            {"keys": E2E_KEYS, "service-url": server.url, "audience": AUDIENCE},
            extra_env=connections(),
        )
        assert run.returncode == 0, [*run.lines, run.stderr]
        with ledger(service).begin() as conn:
            leases = find(conn, LeaseFilter(repository=str(github.repo.id)))
        assert sorted(lease.key_name for lease in leases) == sorted(
            ["DATABASE_URL", "MYSQL_URL", "CACHE_URL", "API_TOKEN"]
        )
        for lease in leases:
            # rk_<16 hex of the id's SHA-256>_<key name>, as the service documents it
            digest = hashlib.sha256(lease.id.encode()).hexdigest()[:16]
            assert lease.label == f"rk_{digest}_{lease.key_name.lower()}"[:32]
            if lease.provider in BACKENDS:
                minted.append((BACKENDS[lease.provider], lease.label))
                assert BACKENDS[lease.provider].exists(lease.label), lease.provider
        payload = kit.workflow_run_completed(
            github.repo.id, github.repo.full_name, claims.run_id, 1, github.installation.id
        )
        delivered = github.sandbox.deliver(
            f"{server.url}/webhook", "workflow_run", payload, app=github.app
        )
        assert delivered.json() == {"outcome": "queued", "queued": 4}
        assert RevocationWorker(service.extensions["runkeys"]).drain() == 4
        assert {stored(ledger(service), lease.id).state for lease in leases} == {LeaseState.REVOKED}
        for backend, label in minted:
            assert not backend.exists(label), f"{backend.provider} {label} is still there"
    finally:
        server.stop()
        for backend, label in minted:  # what a failed test left behind
            backend.drop(label)
