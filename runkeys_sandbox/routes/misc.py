"""The rest of what clients touch: the rate limit, the repository itself, and its OIDC subject
customization."""

from __future__ import annotations

from runkeys_sandbox.server.representations import rate_limit_json, repository_json
from runkeys_sandbox.server.routing import PUBLIC, REPO, Call, Reply, Route


def rate_limit(call: Call) -> Reply:
    """`GET /rate_limit` does not count against the limit it reports."""
    budget = call.world.rates.budget(call.caller.kind, call.caller.rate_key, call.now)
    body = rate_limit_json(budget.limit, budget.remaining, budget.reset, budget.used)
    return Reply(200, body, budget.headers())


def get_repository(call: Call) -> Reply:
    return Reply(200, repository_json(call.repository, call.base_url))


def get_oidc_subject(call: Call) -> Reply:
    keys = call.repository.oidc_claim_keys
    if keys is None:
        return Reply(200, {"use_default": True})
    return Reply(200, {"use_default": False, "include_claim_keys": list(keys)})


ROUTES = (
    Route(
        "GET",
        "/rate_limit",
        rate_limit,
        PUBLIC,
        "https://docs.github.com/rest/rate-limit/rate-limit#get-rate-limit-status-for-the-authenticated-user",
    ),
    Route(
        "GET",
        "/repos/{owner}/{repo}",
        get_repository,
        REPO,
        "https://docs.github.com/rest/repos/repos#get-a-repository",
    ),
    Route(
        "GET",
        "/repos/{owner}/{repo}/actions/oidc/customization/sub",
        get_oidc_subject,
        REPO,
        "https://docs.github.com/rest/actions/oidc#get-the-customization-template-for-an-oidc-subject-claim-for-a-repository",
    ),
)
