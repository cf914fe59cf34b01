"""Repository A's workflow tries to have the service delete deploy keys its run never made: of
another account, of a repository its installation does not reach, of its own repository but
not runkeys', through a forged ledger row. Real OIDC tokens, the real app, keys added through
the sandbox's API; each key is still there afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient

from runkeys.github.session import AppCredentials, GitHubConfig, GitHubSession
from runkeys.leases import LeaseRequest, LeaseState
from runkeys_sandbox.server.state import Repository
from tests.service.attack_kit import (
    armed_service,
    ledger,
    register,
    run_worker,
)
from tests.service.conftest import GitHub
from tests.service.kit import Clock, identity, js, put, stored
from tests.services import unique


@pytest.fixture
def service(github: GitHub, tmp_path: Path, clock: Clock) -> Iterator[Flask]:
    with armed_service(github, tmp_path, clock) as made:
        yield made


@pytest.fixture
def client(service: Flask) -> FlaskClient:
    return service.test_client()


def add_deploy_key(github: GitHub, repo: Repository, title: str) -> int:
    """A deploy key as its owner added it (through the API, as the App)."""
    session = GitHubSession(
        GitHubConfig(
            api_url=github.sandbox.url,
            app=AppCredentials(str(github.app.id), github.app.private_key_pem),
        )
    )
    public = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return int(session.repository(repo.full_name).create_key(title, public.decode(), True).id)


def deploy_key_titles(github: GitHub, repo: Repository) -> list[str]:
    return [key["title"] for key in github.sandbox.deploy_keys(repo)]


def deploy_lease(github: GitHub, target: str, reference: str) -> LeaseRequest:
    return github.lease(
        key_name="FIXTURES_KEY",
        provider="deploy-key",
        params={"repository": target},
        reference=reference,
        secret=False,
    )


def test_a_deploy_key_of_another_account_cannot_be_registered(
    client: FlaskClient, github: GitHub
) -> None:
    victim = github.other_repo  # another owner; the App is installed there too
    key_id = add_deploy_key(github, victim, "production deploy")
    reference = f"{victim.full_name}:{key_id}"
    outside = deploy_lease(github, victim.full_name, reference)
    github.sandbox.clear_requests()
    response = register(client, github, outside)
    assert (response.status_code, js(response)["error"]) == (422, "foreign_repository")
    # refused for its owner, before GitHub is asked which installation reaches it
    assert js(response)["message"] == (
        f"lease {outside.id} (FIXTURES_KEY): {victim.full_name} is not a repository of "
        f"{github.repo.owner}, the token's owner; runkeys revokes only in its own account's "
        "repositories"
    )
    assert [r.path for r in github.sandbox.requests if victim.name in r.path] == []
    # Naming A's repository in the params does not carry the reference along.
    disguised = deploy_lease(github, github.repo.full_name, reference)
    assert js(register(client, github, disguised))["error"] == "reference_mismatch"
    assert deploy_key_titles(github, victim) == ["production deploy"]


def test_a_repository_the_installation_does_not_reach_cannot_be_registered(
    client: FlaskClient, github: GitHub
) -> None:
    """Same account, but not in the installation the token's repository is in: the service
    could not revoke there, and the token's run has no business there."""
    sibling = github.sandbox.add_repository(f"{github.repo.owner}/{unique('fixtures')}")
    attack = deploy_lease(github, sibling.full_name, f"{sibling.full_name}:12345")
    response = register(client, github, attack)
    assert (response.status_code, js(response)["error"]) == (422, "foreign_repository")
    assert "cannot reach" in js(response)["message"]


def test_a_deploy_key_runkeys_did_not_make_is_never_deleted(
    client: FlaskClient, github: GitHub, service: Flask
) -> None:
    """A key id is GitHub's, so a lease naming a key of A's own repository is registered; when
    the run is over the worker reads the key's title, finds it is not the one runkeys gave this
    lease, and refuses for good. A forged row naming another account's key fares the same."""
    own_key = add_deploy_key(github, github.repo, "ci deploy")
    attack = deploy_lease(github, github.repo.full_name, f"{github.repo.full_name}:{own_key}")
    assert register(client, github, attack).status_code == 201
    victim = github.other_repo
    victim_key = add_deploy_key(github, victim, "production deploy")
    forged = deploy_lease(github, victim.full_name, f"{victim.full_name}:{victim_key}")
    put(ledger(service), identity(github.repo.full_name, github.repo.id), forged)
    run_worker(service, attack.id, forged.id)
    for lease_id in (attack.id, forged.id):
        lease = stored(ledger(service), lease_id)
        assert lease.state is LeaseState.FAILED
        assert lease.last_error is not None
        assert "refusing to delete deploy key" in lease.last_error
    assert deploy_key_titles(github, github.repo) == ["ci deploy"]
    assert deploy_key_titles(github, victim) == ["production deploy"]
