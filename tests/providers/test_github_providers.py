"""`deploy-key` and `github-token` beyond the conformance suite, against the sandbox: what is
sent to GitHub, revoke without the token's value, and refusals that name the permission."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runkeys.errors import ProviderError, SpecError
from runkeys.providers.base import MintRequest, RevokeRequest
from runkeys.spec import parse_keys
from tests.providers.harness import EXPIRES_AT, assert_clean
from tests.providers.harness_github import DeployKeyHarness, GitHubTokenHarness
from tests.services import unique


def bodies(harness: DeployKeyHarness | GitHubTokenHarness, method: str, end: str) -> list[Any]:
    return [
        json.loads(r.request_body or "null")
        for r in harness.sandbox.requests
        if r.method == method and r.path.endswith(end)
    ]


def test_a_token_is_asked_for_exactly_the_repositories_and_permissions(
    github_token: GitHubTokenHarness,
) -> None:
    github_token.sandbox.clear_requests()
    github_token.mint()
    (body,) = bodies(github_token, "POST", "/access_tokens")
    assert body == {"repositories": ["app"], "permissions": {"contents": "read"}}


def test_a_token_revoked_without_its_value_calls_nobody(github_token: GitHubTokenHarness) -> None:
    minted = github_token.mint()
    github_token.sandbox.clear_requests()
    github_token.provider.revoke(RevokeRequest(minted.reference, github_token.params))
    assert github_token.sandbox.requests == []
    assert github_token.sandbox.token_is_live(minted.value)  # until GitHub's hour is over
    github_token.revoke(minted)  # the runner, which has it, revokes for real
    assert not github_token.sandbox.token_is_live(minted.value)


def test_a_token_for_a_repository_the_app_is_not_on_names_the_installation(
    github_token: GitHubTokenHarness,
) -> None:
    params = {"repositories": ["octo/elsewhere"], "permissions": {"contents": "read"}}
    with pytest.raises(ProviderError, match="404") as caught:
        github_token.mint(params)
    assert not caught.value.retryable
    assert "install the GitHub App" in caught.value.fix


def test_a_token_outlives_no_spec_asking_for_more_than_an_hour() -> None:
    with pytest.raises(SpecError, match="limit of 1h"):
        parse_keys(
            "T: {provider: github-token, ttl: 2h, repositories: [octo/app],"
            " permissions: {contents: read}}"
        )


def test_a_writable_deploy_key_when_asked(deploy_key: DeployKeyHarness) -> None:
    minted = deploy_key.mint({"repository": "octo/app", "read_only": False})
    (listed,) = deploy_key.sandbox.deploy_keys(deploy_key.repository)
    assert listed["read_only"] is False
    assert listed["id"] == int(minted.reference.rpartition(":")[2])
    (body,) = bodies(deploy_key, "POST", "/keys")
    assert body["read_only"] is False
    assert body["key"].startswith("ssh-ed25519 ")
    assert minted.value.splitlines()[0] not in json.dumps(body)


def test_a_deploy_key_without_administration_names_the_permission(
    deploy_key: DeployKeyHarness,
) -> None:
    sandbox = deploy_key.sandbox
    repo = sandbox.add_repository("acme/readonly")
    sandbox.install(deploy_key.app, [repo], {"contents": "read", "metadata": "read"})
    label = deploy_key.label()
    with pytest.raises(ProviderError) as caught:
        deploy_key.mint({"repository": "acme/readonly"}, label=label)
    assert not caught.value.retryable
    assert "Administration: write" in caught.value.fix
    assert sandbox.deploy_keys(repo) == []


def test_a_deploy_key_failure_at_github_is_retryable_and_clean(
    deploy_key: DeployKeyHarness,
) -> None:
    deploy_key.sandbox.inject_fault("POST", r"/repos/octo/app/keys$", status=502, times=5)
    with pytest.raises(ProviderError) as caught:
        deploy_key.mint()
    assert caught.value.retryable
    assert deploy_key.sandbox.deploy_keys(deploy_key.repository) == []


def test_a_deploy_key_value_never_shows_in_an_error(deploy_key: DeployKeyHarness) -> None:
    minted = deploy_key.mint()
    deploy_key.sandbox.inject_fault("DELETE", r"/repos/octo/app/keys/\d+$", status=500, times=5)
    with pytest.raises(ProviderError) as caught:
        deploy_key.revoke(minted)
    assert caught.value.retryable
    assert_clean(caught.value, [*deploy_key.secrets(minted), *minted.value.splitlines()[1:-1]])


@pytest.mark.parametrize("harness_class", [DeployKeyHarness, GitHubTokenHarness])
def test_the_github_providers_refuse_to_run_without_github(harness_class: Any) -> None:
    harness = harness_class()
    request = MintRequest("K", harness.params, EXPIRES_AT, unique("rk"))
    with pytest.raises(ProviderError, match="no GitHub access") as caught:
        harness.provider.mint(request)
    assert not caught.value.retryable
