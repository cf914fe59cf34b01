"""Environments: PyGithub's calls, URL-encoded and case-insensitive names, body checks."""

from __future__ import annotations

import pytest
from github import GithubException, UnknownObjectException
from github.EnvironmentDeploymentBranchPolicy import EnvironmentDeploymentBranchPolicyParams

from tests.sandbox.conftest import Seeded

ENVS = "/repos/octo/app/environments"


def test_create_get_list_delete_with_pygithub(seeded: Seeded) -> None:
    repo = seeded.github().get_repo("octo/app")
    created = repo.create_environment(
        "staging",
        wait_timer=5,
        deployment_branch_policy=EnvironmentDeploymentBranchPolicyParams(
            protected_branches=True, custom_branch_policies=False
        ),
    )
    assert created.name == "staging"
    assert created.deployment_branch_policy.protected_branches is True
    # GitHub lists a deployment branch policy as a rule of its own too (the REST description's
    # example of "Get an environment" shows one of type `branch_policy`).
    assert [rule.type for rule in created.protection_rules] == ["wait_timer", "branch_policy"]
    repo.create_environment("ci-run-1")
    assert seeded.sb.environment_names(seeded.repo) == ["ci-run-1", "staging"]
    assert [e.name for e in repo.get_environments()] == ["ci-run-1", "staging"]
    repo.delete_environment("staging")
    assert seeded.sb.environment_names(seeded.repo) == ["ci-run-1"]
    with pytest.raises(UnknownObjectException):
        repo.delete_environment("staging")


def test_custom_deployment_protection_rules_are_listed(seeded: Seeded) -> None:
    repo = seeded.github().get_repo("octo/app")
    repo.create_environment("production")
    url = f"{repo.url}/environments/production/deployment_protection_rules"
    _, empty = repo.requester.requestJsonAndCheck("GET", url)
    assert (empty["total_count"], empty["custom_deployment_protection_rules"]) == (0, [])
    with seeded.sb.world.lock:
        seeded.repo.environments["production"].custom_rules = [{"id": 3, "app_slug": "gate"}]
    _, listed = repo.requester.requestJsonAndCheck("GET", url)
    assert listed["total_count"] == 1
    (rule,) = listed["custom_deployment_protection_rules"]
    assert (rule["id"], rule["enabled"], rule["app"]["slug"]) == (3, True, "gate")
    with pytest.raises(UnknownObjectException):
        repo.requester.requestJsonAndCheck("GET", url.replace("production", "staging"))


def test_update_keeps_the_id_and_the_secrets(seeded: Seeded) -> None:
    token = seeded.token()
    repo = seeded.github(token).get_repo("octo/app")
    first = repo.create_environment("prod")
    repo.get_environment("prod").create_secret("KEY", "v")
    again = seeded.api("PUT", f"{ENVS}/PROD", token, json={"wait_timer": 1})
    assert again.status_code == 200
    assert again.json()["id"] == first.id
    assert again.json()["name"] == "prod"  # the name as first given
    assert seeded.sb.secret_value(seeded.repo, "KEY", environment="prod") == "v"


def test_names_are_url_encoded(seeded: Seeded) -> None:
    token = seeded.token()
    created = seeded.api("PUT", f"{ENVS}/ci%2Fpr-12", token)
    assert created.status_code == 200
    data = created.json()
    assert data["name"] == "ci/pr-12"
    # As GitHub: `url` carries the raw name, `html_url` the encoded one.
    assert data["url"].endswith("/environments/ci/pr-12")
    assert data["html_url"].endswith("environments_filter=ci%2Fpr-12")
    assert seeded.api("GET", f"{ENVS}/ci%2Fpr-12", token).status_code == 200
    assert seeded.api("GET", f"{ENVS}/ci/pr-12", token).status_code == 404  # unencoded `/`
    assert seeded.api("GET", f"{ENVS}/CI%2FPR-12", token).json()["name"] == "ci/pr-12"
    assert seeded.api("DELETE", f"{ENVS}/ci%2Fpr-12", token).status_code == 204
    assert seeded.api("DELETE", f"{ENVS}/ci%2Fpr-12", token).status_code == 404


def test_pygithub_get_environment_keeps_the_unencoded_url(seeded: Seeded) -> None:
    """A trap GitHub sets: a fetched environment's `url` has the raw `/`, so PyGithub's
    `Environment.create_secret` on it misses; runkeys must build encoded paths itself."""
    repo = seeded.github(lazy=False).get_repo("octo/app")
    repo.create_environment("a/b")
    with pytest.raises(UnknownObjectException):
        repo.get_environment("a/b").create_secret("X", "v")


def test_put_without_a_body_creates(seeded: Seeded) -> None:
    answer = seeded.api("PUT", f"{ENVS}/bare", seeded.token())
    assert answer.status_code == 200
    assert answer.json()["protection_rules"] == []
    assert answer.json()["deployment_branch_policy"] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"unknown": 1}, 'Invalid request.\n\n"unknown" is not a permitted key.'),
        (
            {"wait_timer": "5"},
            "Invalid request.\n\nFor 'properties/wait_timer', \"5\" is not an integer.",
        ),
        ({"wait_timer": 43201}, "is greater than the maximum of 43200"),
        ({"reviewers": [{"type": "Bot", "id": 1}]}, 'is not a member of ["User", "Team"]'),
        ({"reviewers": [{"type": "User", "id": n} for n in range(7)]}, "has more than 6 items"),
        (
            {"deployment_branch_policy": {"protected_branches": True}},
            '"custom_branch_policies" wasn\'t supplied.',
        ),
        (
            {
                "deployment_branch_policy": {
                    "protected_branches": True,
                    "custom_branch_policies": True,
                }
            },
            "protected_branches",
        ),
        ([1], "Invalid request.\n\nFor 'links/0/schema', [1] is not an object."),
    ],
)
def test_invalid_bodies_are_422(seeded: Seeded, body: object, message: str) -> None:
    answer = seeded.api("PUT", f"{ENVS}/prod", seeded.token(), json=body)
    assert answer.status_code == 422
    assert message in answer.json()["message"]
    assert seeded.sb.environment_names(seeded.repo) == []


def test_invalid_names_are_422(seeded: Seeded) -> None:
    token = seeded.token()
    assert seeded.api("PUT", f"{ENVS}/{'x' * 256}", token).status_code == 422
    assert seeded.api("PUT", f"{ENVS}/%20", token).status_code == 422
    assert seeded.api("PUT", f"{ENVS}/{'x' * 255}", token).status_code == 200


def test_reviewers_are_shown_as_protection_rules(seeded: Seeded) -> None:
    body = {
        "reviewers": [{"type": "User", "id": 42}, {"type": "Team", "id": 7}],
        "prevent_self_review": True,
    }
    answer = seeded.api("PUT", f"{ENVS}/gated", seeded.token(), json=body)
    assert answer.status_code == 200
    (rule,) = answer.json()["protection_rules"]
    assert rule["type"] == "required_reviewers"
    assert [r["reviewer"]["id"] for r in rule["reviewers"]] == [42, 7]


def test_environments_need_administration_to_write_and_actions_to_read(seeded: Seeded) -> None:
    readonly = seeded.token(permissions={"actions": "read"})
    assert seeded.api("GET", ENVS, readonly).status_code == 200
    refused = seeded.api("PUT", f"{ENVS}/prod", readonly)
    assert refused.status_code == 403
    assert refused.json()["message"] == "Resource not accessible by integration"
    assert refused.headers["X-Accepted-GitHub-Permissions"] == "administration=write"
    with pytest.raises(GithubException) as info:
        seeded.github(readonly).get_repo("octo/app").create_environment("prod")
    assert info.value.status == 403
