"""The action against the sandbox GitHub over HTTP (real PyGithub): what it writes, sealed to the
right key, with exactly the calls it needs and no others."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
import requests

from tests.action.conftest import GitHub

TWO_KEYS = (
    "API_TOKEN: {provider: random, ttl: 30m}\n"
    "SIGNING_SECRET: {provider: random, format: base64url, bytes: 48, lifetime: job}\n"
)
INSTALLATION = "GET /repos/octo/app/installation"
ENV_PERMISSIONS = {
    "secrets": "write",
    "environments": "write",
    "actions": "read",
    "administration": "write",
}


def access_token_call(github: GitHub) -> str:
    return f"POST /app/installations/{github.installation.id}/access_tokens"


def create_environment(github: GitHub, name: str) -> None:
    token = github.sandbox.create_installation_token(github.installation)
    answer = requests.put(
        f"{github.sandbox.url}/repos/octo/app/environments/{name}",
        headers={"Authorization": f"Bearer {token}"},
        json={"wait_timer": 5},
        timeout=10,
    )
    assert answer.status_code == 200


def put_repository_secrets(github: GitHub, names: list[str]) -> None:
    from github import Auth, Github

    token = github.sandbox.create_installation_token(github.installation)
    client = Github(
        base_url=github.sandbox.url,
        auth=Auth.Token(token),
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    repo = client.get_repo("octo/app")
    for name in names:
        repo.create_secret(name, "old value")


def test_environment_secrets_with_the_fewest_calls(github: GitHub) -> None:
    run = github.step.run(github.app_inputs(keys=TWO_KEYS, environment="ci-run-{run_id}"))
    assert run.returncode == 0, [*run.lines, run.stderr]
    env = "/repos/octo/app/environments/ci-run-4242"
    assert github.calls() == [
        INSTALLATION,
        access_token_call(github),
        f"GET {env}",  # 404: missing, so created (a PUT on an existing one resets its rules)
        f"PUT {env}",
        f"GET {env}/secrets/public-key",
        f"PUT {env}/secrets/API_TOKEN",
        f"PUT {env}/secrets/SIGNING_SECRET",
    ]
    token_request = github.sandbox.requests[1].json()
    assert token_request == {"repositories": ["app"], "permissions": ENV_PERMISSIONS}
    for name in ("API_TOKEN", "SIGNING_SECRET"):
        assert github.secret(name, "ci-run-4242") == run.env[name]
    run.assert_masked_first({name: run.env[name] for name in ("API_TOKEN", "SIGNING_SECRET")})
    run.assert_nowhere(run.env.values())
    assert github.sandbox.environment_names(github.repo) == ["ci-run-4242"]
    described = {k["name"]: k for k in run.keys_json()}
    assert described["API_TOKEN"]["scope"] == "environment"
    assert described["API_TOKEN"]["environment"] == "ci-run-4242"
    assert "| `API_TOKEN` | random | environment `ci-run-4242` | run |" in run.summary
    assert "runkeys created the environment `ci-run-4242`" in run.summary
    state = json.loads(run.state["leases"])
    assert state["created_environment"] == "ci-run-4242"
    assert [lease["key_name"] for lease in state["leases"]] == ["SIGNING_SECRET"]


def test_an_existing_environment_is_not_written_but_its_secrets_are_counted(
    github: GitHub,
) -> None:
    create_environment(github, "staging")
    github.sandbox.clear_requests()
    run = github.step.run(github.app_inputs(keys=TWO_KEYS, environment="staging"))
    assert run.returncode == 0, run.lines
    env = "/repos/octo/app/environments/staging"
    assert github.calls() == [
        INSTALLATION,
        access_token_call(github),
        f"GET {env}",
        f"GET {env}/secrets",
        f"GET {env}/secrets/public-key",
        f"PUT {env}/secrets/API_TOKEN",
        f"PUT {env}/secrets/SIGNING_SECRET",
    ]
    assert json.loads(run.state["leases"])["created_environment"] is None
    assert "created the environment" not in run.summary


def test_repository_secrets_with_the_fewest_calls(github: GitHub) -> None:
    run = github.step.run(github.app_inputs(keys=TWO_KEYS, **{"repository-secrets": "true"}))
    assert run.returncode == 0, run.lines
    assert github.calls() == [
        INSTALLATION,
        access_token_call(github),
        "GET /repos/octo/app/actions/secrets",
        "GET /repos/octo/app/actions/secrets/public-key",
        "PUT /repos/octo/app/actions/secrets/API_TOKEN",
        "PUT /repos/octo/app/actions/secrets/SIGNING_SECRET",
    ]
    assert github.sandbox.requests[1].json()["permissions"] == {"secrets": "write"}
    assert github.secret("API_TOKEN") == run.env["API_TOKEN"]
    assert {k["scope"] for k in run.keys_json()} == {"repository"}


def test_the_cap_counts_only_names_not_already_there(github: GitHub) -> None:
    put_repository_secrets(github, [f"OLD_{i}" for i in range(98)] + ["API_TOKEN"])
    github.sandbox.clear_requests()
    run = github.step.run(github.app_inputs(keys=TWO_KEYS, **{"repository-secrets": "true"}))
    assert run.returncode == 0, run.lines  # 99 + 1 new = 100: fits
    assert len(github.sandbox.secret_names(github.repo)) == 100


def test_a_full_scope_fails_before_anything_is_minted(github: GitHub) -> None:
    put_repository_secrets(github, [f"OLD_{i}" for i in range(99)])
    github.sandbox.clear_requests()
    run = github.step.run(github.app_inputs(keys=TWO_KEYS, **{"repository-secrets": "true"}))
    assert run.returncode == 1
    (error,) = run.annotations("error")
    assert "holds 99 secrets; 2 more would pass GitHub's limit of 100" in error[1]
    assert run.masks == []
    assert run.env == {}
    assert github.writes() == [access_token_call(github)]


def test_a_pull_request_names_its_environment(github: GitHub) -> None:
    github.step.pull_request_event(17)
    keys = "API_TOKEN: {provider: random, lifetime: pr}"
    run = github.step.run(github.app_inputs(keys=keys, environment="ci-pr-{pr}"))
    assert run.returncode == 0, run.lines
    assert github.secret("API_TOKEN", "ci-pr-17") == run.env["API_TOKEN"]


def test_a_provider_working_on_github_widens_the_token_by_what_it_declares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from action_src.collaborators import permissions_for
    from runkeys.issuance import SecretScope
    from runkeys.providers import PROVIDERS
    from tests.unit.action.test_issuance import Flaky

    class OnGitHub(Flaky):
        name = "on-github"
        github_permissions: ClassVar[dict[str, str]] = {
            "administration": "write",
            "contents": "read",
        }

    monkeypatch.setitem(PROVIDERS, OnGitHub.name, OnGitHub)
    repository = SecretScope("octo/app")
    assert permissions_for(repository, ["random"]) == {"secrets": "write"}
    assert permissions_for(repository, ["random", "on-github"]) == {
        "secrets": "write",
        "administration": "write",
        "contents": "read",
    }
    environment = SecretScope("octo/app", "ci")
    assert permissions_for(environment, ["on-github"])["administration"] == "write"
    assert permissions_for(None, ["random"]) == {}
