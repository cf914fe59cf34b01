"""Each provider's parameters refused at the field that is wrong, with the cause said, and the
almost-wrong ones accepted: the Redis patterns and categories, a GitHub token's repositories and
permissions, a deploy key's repository. No server: `check_params` alone decides."""

from __future__ import annotations

from typing import Any

import pytest

from runkeys.errors import ParamError
from runkeys.providers.base import Provider
from runkeys.providers.deploy_key import DeployKeyProvider
from runkeys.providers.github_token import GitHubTokenProvider
from runkeys.providers.redis_acl import RedisAclProvider

REDIS, TOKEN, DEPLOY = RedisAclProvider(), GitHubTokenProvider(), DeployKeyProvider()
REPO = {"repositories": ["octo/app"]}
READ = {"permissions": {"contents": "read"}}
NOT_GLOB = "is not a plain glob pattern"
NOT_CATEGORY = "is not a category runkeys grants"
NOT_REPOSITORY = "is not an owner/name repository"
MAPPING = "must be a mapping like {contents: read}"


@pytest.mark.parametrize(
    ("provider", "params", "field", "cause"),
    [
        (REDIS, {"keys": ["a b"]}, "keys", f"'a b' {NOT_GLOB}"),
        (REDIS, {"channels": ["a b"]}, "channels", f"'a b' {NOT_GLOB}"),
        (REDIS, {"keys": ["k"] * 33}, "keys", "more than 32 patterns"),
        (REDIS, {"channels": ["c"] * 33}, "channels", "more than 32 patterns"),
        (
            REDIS,
            {"categories": ["@nope"]},
            "categories",
            f"'@nope' {NOT_CATEGORY}",
        ),
        (
            REDIS,
            {"categories": ["@read+"]},
            "categories",
            f"'@read+' {NOT_CATEGORY}",
        ),
        (TOKEN, {}, "repositories", "missing"),
        (TOKEN, REPO, "permissions", "missing"),
        (
            TOKEN,
            {**REPO, "permissions": {}},
            "permissions",
            MAPPING,
        ),
        (
            TOKEN,
            {**REPO, "permissions": "contents:read"},
            "permissions",
            MAPPING,
        ),
        (
            TOKEN,
            {**REPO, "permissions": {"nope": "read"}},
            "permissions.nope",
            "is not a GitHub App permission",
        ),
        (
            TOKEN,
            {**REPO, "permissions": {"contents": "admin"}},
            "permissions.contents",
            "must be one of ('read', 'write')",
        ),
        (
            TOKEN,
            {"repositories": ["octo/a", "other/b"], **READ},
            "repositories",
            "names repositories of several owners",
        ),
        (
            TOKEN,
            {"repositories": [f"octo/r{i}" for i in range(501)], **READ},
            "repositories",
            "more than GitHub's 500",
        ),
        (
            TOKEN,
            {"repositories": ["octo/.."], **READ},
            "repositories",
            "'octo/..' is not an owner/name repository",
        ),
        (DEPLOY, {}, "repository", "missing"),
        (DEPLOY, {"repository": "octo"}, "repository", "'octo' is not an owner/name repository"),
        (DEPLOY, {"repository": 5}, "repository", "5 is not an owner/name repository"),
        (
            DEPLOY,
            {"repository": "octo/a..b"},
            "repository",
            f"'octo/a..b' {NOT_REPOSITORY}",
        ),
        (
            DEPLOY,
            {"repository": "octo/app", "read_only": "yes"},
            "read_only",
            "must be true or false",
        ),
    ],
)
def test_a_wrong_parameter_is_refused_at_its_field(
    provider: Provider, params: dict[str, Any], field: str, cause: str
) -> None:
    with pytest.raises(ParamError) as caught:
        provider.check_params(params)
    assert (caught.value.field, caught.value.cause) == (field, cause)


@pytest.mark.parametrize(
    ("provider", "params"),
    [
        (REDIS, {"keys": ["k"] * 32, "channels": ["c"] * 32}),
        (REDIS, {"categories": ["+@read", "read", "@write"]}),
        (TOKEN, {**REPO, "permissions": {"contents": "write"}}),
        (TOKEN, {"repositories": ["octo/a", "OCTO/b"], **READ}),
        (TOKEN, {"repositories": [f"octo/r{i}" for i in range(500)], **READ}),
        (DEPLOY, {"repository": "octo/app", "read_only": False}),
    ],
)
def test_the_almost_wrong_parameter_is_accepted(provider: Provider, params: dict[str, Any]) -> None:
    provider.check_params(params)
