"""Each provider's parameters refused at the field that is wrong, with the cause said, and the
almost-wrong ones accepted: the Redis patterns and categories, a GitHub token's repositories and
permissions, a deploy key's repository. No server: `check_params` alone decides."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from runkeys.connections import Connection
from runkeys.errors import ParamError, ProviderError
from runkeys.providers.base import Provider, RevokeRequest
from runkeys.providers.deploy_key import DeployKeyProvider
from runkeys.providers.github_token import GitHubTokenProvider
from runkeys.providers.mysql import MysqlProvider
from runkeys.providers.redis_acl import RedisAclProvider, _rules

REDIS, TOKEN, DEPLOY = RedisAclProvider(), GitHubTokenProvider(), DeployKeyProvider()
REPO = {"repositories": ["octo/app"]}
READ = {"permissions": {"contents": "read"}}
NOT_GLOB = "is not a plain glob pattern"
NOT_CATEGORY = "is not a category runkeys grants"
NOT_REPOSITORY = "is not an owner/name repository"
MAPPING = "must be a mapping like {contents: read}"
NOT_IDENTIFIER = "'a b' is not a plain identifier"
ADMINISTERS = "administers the server or acts on other users' keys, functions or scripts"


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


OK_GRANT = {"database": "app", "privileges": ["SELECT"]}


@pytest.mark.parametrize(
    ("grant", "field", "cause"),
    [
        ("app", "grant", "must be a list of {database, table, privileges}"),
        ([OK_GRANT, 5], "grant[1]", "must be a mapping"),
        ([OK_GRANT, {**OK_GRANT, "schema": "x"}], "grant[1].schema", "unknown field"),
        ([OK_GRANT, {"privileges": ["SELECT"]}], "grant[1].database", "missing"),
        ([OK_GRANT, {**OK_GRANT, "database": "a b"}], "grant[1].database", NOT_IDENTIFIER),
        (
            [OK_GRANT, {**OK_GRANT, "table": "a b"}],
            "grant[1].table",
            NOT_IDENTIFIER,
        ),
        (
            [OK_GRANT, {**OK_GRANT, "privileges": 5}],
            "grant[1].privileges",
            "must be a list of strings",
        ),
        ([OK_GRANT, {**OK_GRANT, "privileges": []}], "grant[1].privileges", "is empty"),
    ],
)
def test_a_wrong_mysql_grant_is_refused_at_its_own_field(
    grant: Any, field: str, cause: str
) -> None:
    """The second grant is the wrong one: the field names which, and which part of it."""
    with pytest.raises(ParamError) as caught:
        MysqlProvider().check_params({"grant": grant})
    assert (caught.value.field, caught.value.cause) == (field, cause)


def test_a_privilege_refused_says_which_can_be_granted() -> None:
    with pytest.raises(ParamError) as caught:
        MysqlProvider().check_params(
            {"grant": [{**OK_GRANT, "table": "t", "privileges": ["SUPER"]}]}
        )
    assert caught.value.field == "grant[0].privileges"
    assert caught.value.fix.startswith("use some of: ")
    assert "SELECT" in caught.value.fix.split(": ", 1)[1].split(", ")
    with pytest.raises(ParamError) as caught:
        REDIS.check_params({"categories": ["@nope"]})
    assert caught.value.fix.startswith("use some of: ")
    assert "read" in caught.value.fix.split(": ", 1)[1].split(", ")


@pytest.mark.parametrize(
    ("command", "cause"),
    [
        ("a b", "'a b' is not a command name"),
        # `config` is refused whole, so each of its subcommands is too.
        ("config|get", f"'config|get' {ADMINISTERS}"),
    ],
)
def test_a_redis_command_is_refused_at_the_commands_field(command: str, cause: str) -> None:
    with pytest.raises(ParamError) as caught:
        REDIS.check_params({"commands": [command]})
    assert (caught.value.field, caught.value.cause) == ("commands", cause)


def test_a_category_with_a_stray_letter_before_it_is_refused() -> None:
    with pytest.raises(ParamError) as caught:
        REDIS.check_params({"categories": ["Xread"]})
    assert (caught.value.field, caught.value.cause) == ("categories", f"'Xread' {NOT_CATEGORY}")


def test_redis_categories_are_matched_to_the_allow_list_in_any_spelling() -> None:
    """`+@read`, `@read` and `read` are all the allow list's `@read`; the refusal names the
    list the connection sets."""
    connection = Connection("CI_REDIS", "redis://u:p@cache:6379/0?runkeys_grants=@read,get")
    REDIS.check_allowed(
        {"categories": ["+@read", "@read", "read"], "commands": ["get"]}, connection
    )
    with pytest.raises(ParamError) as caught:
        REDIS.check_allowed({"categories": ["@write"]}, connection)
    assert (caught.value.field, caught.value.cause) == (
        "categories",
        "'@write' is not among the categories RUNKEYS_CONNECTION_CI_REDIS allows "
        "(runkeys_grants: @read, get)",
    )
    with pytest.raises(ParamError) as caught:
        REDIS.check_allowed({"commands": ["set"]}, connection)
    assert (caught.value.field, caught.value.cause) == (
        "commands",
        "'set' is not among the commands RUNKEYS_CONNECTION_CI_REDIS allows "
        "(runkeys_grants: @read, get)",
    )


def test_the_redis_acl_rules_are_the_parameters_and_nothing_more() -> None:
    params = {
        "keys": ["app:*"],
        "channels": ["news"],
        "categories": ["+@read", "write"],
        "commands": ["get", "-set"],
    }
    digest = hashlib.sha256(b"pw").hexdigest()
    rules = _rules(params, "pw", select=True)
    assert rules[:10] == [
        "reset",
        "on",
        f"#{digest}",
        "resetchannels",
        "~app:*",
        "&news",
        "+@read",
        "+@write",
        "-@admin",
        "-@dangerous",
    ]
    assert {"-function|delete", "-script|flush"} <= set(rules[10:-3])
    assert rules[-3:] == ["+get", "-set", "+select"]
    assert _rules({}, "pw", select=False)[-1] != "+select"


def test_a_mysql_reference_is_its_label_at_the_host_minted_for() -> None:
    mysql = MysqlProvider()
    assert mysql.reference_matches("rk_a@%", label="rk_a", params={})
    assert mysql.reference_matches("rk_a@10.0.0.%", label="rk_a", params={"host": "10.0.0.%"})
    assert not mysql.reference_matches("rk_a@%", label="rk_a", params={"host": "10.0.0.%"})
    assert not mysql.reference_matches("rk_b@%", label="rk_a", params={})


def test_a_github_token_reference_matches_any_label() -> None:
    """The service revokes nothing by a token's reference (it has no value): naming another
    lease's token gains nothing, so the reference is not bound to the label."""
    assert TOKEN.reference_matches("sha256:abc", label="rk_other", params={})


@pytest.mark.parametrize(
    ("label", "title"),
    [("rk_lease1", "runkeys rk_lease1"), (None, "runkeys rk_from_before_labels")],
)
def test_a_deploy_key_runkeys_made_for_the_lease_passes_the_title_check(
    label: str | None, title: str
) -> None:
    request = RevokeRequest(reference="octo/app:7", params={}, label=label)
    DEPLOY._check_title(title, request, "octo/app")


@pytest.mark.parametrize(
    ("label", "title"),
    [
        ("rk_lease1", "runkeys rk_lease2"),
        ("rk_lease1", "rk_lease1"),
        (None, "runkeys RK_x"),
        (None, "deploy rk_x"),
    ],
)
def test_a_deploy_key_with_another_title_is_refused_for_good(label: str | None, title: str) -> None:
    request = RevokeRequest(reference="octo/app:7", params={}, label=label)
    with pytest.raises(ProviderError) as caught:
        DEPLOY._check_title(title, request, "octo/app")
    assert caught.value.provider == "deploy-key"
    assert caught.value.retryable is False
    assert "the key in octo/app is left alone" in caught.value.fix


def test_a_deploy_key_lease_whose_label_is_no_runkeys_name_is_refused() -> None:
    request = RevokeRequest(reference="octo/app:7", params={}, label="app_owner")
    with pytest.raises(ProviderError) as caught:
        DEPLOY._check_title("runkeys app_owner", request, "octo/app")
    assert caught.value.provider == "deploy-key"
    assert (
        caught.value.cause
        == "deploy-key: refusing label 'app_owner': it is not an account runkeys makes (rk_…)"
    )
