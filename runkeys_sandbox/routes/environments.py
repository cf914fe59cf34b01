"""Deployment environments (https://docs.github.com/rest/deployments/environments): create or
update (PUT), get, list, delete. Names are case-insensitive and arrive URL-encoded (`%2F`).

GitHub's only documented rule for a name is its length, at most 255 characters (and not blank):
https://docs.github.com/actions/how-tos/deploy/configure-and-manage-deployments/manage-environments#creating-an-environment
runkeys' stricter rules are its own: a test sending what they forbid sees GitHub accept it."""

from __future__ import annotations

from typing import Any

from runkeys_sandbox.server import bodies
from runkeys_sandbox.server.errors import ApiError, not_found
from runkeys_sandbox.server.representations import custom_rule_json, environment_json
from runkeys_sandbox.server.routing import REPO, Call, Reply, Route, paginate
from runkeys_sandbox.server.state import Environment

# UNVERIFIED wording (GitHub documents the 422, not its message).
BRANCH_POLICY_CONFLICT = (
    "Invalid request.\n\nExactly one of protected_branches and custom_branch_policies must be true."
)

_DOCS = "https://docs.github.com/rest/deployments/environments"
NAME_MAX = 255


def name_problem(name: str) -> str | None:
    """GitHub's own rule (see the module's docstring), not the product's stricter one."""
    if not name.strip():
        return "the name cannot be blank"  # UNVERIFIED wording
    if len(name) > NAME_MAX:
        return f"the name may have at most {NAME_MAX} characters"  # UNVERIFIED wording
    return None


def list_environments(call: Call) -> Reply:
    repo = call.repository
    envs = sorted(repo.environments.values(), key=lambda e: e.name.lower())
    items = [environment_json(repo, env, call.base_url) for env in envs]
    return paginate(call, items, key="environments")


def get_environment(call: Call) -> Reply:
    repo = call.repository
    env = repo.environments.get(call.params["environment_name"].lower())
    if env is None:
        raise not_found()
    return Reply(200, environment_json(repo, env, call.base_url))


def put_environment(call: Call) -> Reply:
    repo = call.repository
    name = call.params["environment_name"]
    problem = name_problem(name)
    if problem:
        raise ApiError(422, f"Invalid environment name: {problem}")  # UNVERIFIED wording
    body: dict[str, Any] = call.body(bodies.ENVIRONMENT, optional=True) or {}
    policy = body.get("deployment_branch_policy")
    if policy is not None and policy["protected_branches"] == policy["custom_branch_policies"]:
        raise ApiError(422, BRANCH_POLICY_CONFLICT)
    now = call.now
    env = repo.environments.get(name.lower())
    if env is None:
        world = call.world
        env = Environment(
            id=world.next_id("environment"),
            name=name,
            created_at=now,
            updated_at=now,
            rule_ids=(world.next_id("rule"), world.next_id("rule"), world.next_id("rule")),
        )
        repo.environments[name.lower()] = env
    _apply(env, body)
    env.updated_at = now
    return Reply(200, environment_json(repo, env, call.base_url))


def _apply(env: Environment, body: dict[str, Any]) -> None:
    if "wait_timer" in body:
        env.wait_timer = int(body["wait_timer"])
    if "prevent_self_review" in body:
        env.prevent_self_review = bool(body["prevent_self_review"])
    if "reviewers" in body:
        env.reviewers = [
            {"type": r.get("type", "User"), "id": int(r["id"])}
            for r in body["reviewers"] or []
            if "id" in r
        ]
    if "deployment_branch_policy" in body:
        env.deployment_branch_policy = body["deployment_branch_policy"]


def list_custom_rules(call: Call) -> Reply:
    repo = call.repository
    env = repo.environments.get(call.params["environment_name"].lower())
    if env is None:
        raise not_found()
    rules = [custom_rule_json(rule, call.base_url) for rule in env.custom_rules]
    return Reply(200, {"total_count": len(rules), "custom_deployment_protection_rules": rules})


def delete_environment(call: Call) -> Reply:
    repo = call.repository
    if repo.environments.pop(call.params["environment_name"].lower(), None) is None:
        raise not_found()
    return Reply(204)


_ENV = "/repos/{owner}/{repo}/environments"

# Repeated on purpose: a table, one Route per GitHub endpoint with its docs anchor.
ROUTES = (
    Route("GET", _ENV, list_environments, REPO, f"{_DOCS}#list-environments"),
    Route(
        "GET", f"{_ENV}/{{environment_name}}", get_environment, REPO, f"{_DOCS}#get-an-environment"
    ),
    Route(
        "PUT",
        f"{_ENV}/{{environment_name}}",
        put_environment,
        REPO,
        f"{_DOCS}#create-or-update-an-environment",
    ),
    Route(
        "GET",
        f"{_ENV}/{{environment_name}}/deployment_protection_rules",
        list_custom_rules,
        REPO,
        "https://docs.github.com/rest/deployments/protection-rules"
        "#get-all-deployment-protection-rules-for-an-environment",
    ),
    Route(
        "DELETE",
        f"{_ENV}/{{environment_name}}",
        delete_environment,
        REPO,
        f"{_DOCS}#delete-an-environment",
    ),
)
