"""What a `redis` key may run, on the real Redis 7: a key pattern limits only commands with
keys, so the ones that reach every user's functions, scripts and key names are taken away from
every category that holds them (`scripting`, but also `write` and `slow`) and cannot be named;
EVAL, FCALL and the key's own keys still work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from runkeys.connections import Connection
from runkeys.errors import ParamError, ProviderError
from runkeys.providers.redis_acl import RedisAclProvider
from tests.providers.harness import assert_clean
from tests.providers.harness_redis import NO_RETRY, RedisHarness, command

pytestmark = pytest.mark.services


@pytest.fixture
def library(redis_acl: RedisHarness) -> Iterator[str]:
    """Another application's function library, loaded by the server's own admin."""
    name = f"{redis_acl.base}_otherapp"
    code = f"#!lua name={name}\nredis.register_function('{name}_f', function() return 7 end)"
    command(redis_acl.root, "FUNCTION", "LOAD", code)
    try:
        yield name
    finally:
        command(redis_acl.root, "FUNCTION", "DELETE", name)


def as_key(redis_acl: RedisHarness, categories: list[str]) -> redis.Redis:
    params = {"keys": [f"{redis_acl.base}:*"], "categories": categories}
    return redis.Redis.from_url(redis_acl.mint(params).value, retry=NO_RETRY)


def replacing(name: str) -> str:
    return f"#!lua name={name}\nredis.register_function('{name}_f', function() return 666 end)"


@pytest.mark.parametrize(
    "categories",
    [["read", "write", "scripting"], ["write"], ["slow"], ["scripting"], ["read", "keyspace"]],
)
def test_another_applications_functions_scripts_and_keys_are_out_of_reach(
    redis_acl: RedisHarness, library: str, categories: list[str]
) -> None:
    other_key = f"{redis_acl.base}_other:session:abc"
    redis_acl.root.set(other_key, "theirs")
    client = as_key(redis_acl, categories)
    attacks: list[tuple[Any, ...]] = [
        ("FUNCTION", "DELETE", library),
        ("FUNCTION", "FLUSH"),
        ("FUNCTION", "FLUSH", "ASYNC"),
        ("FUNCTION", "RESTORE", b"\x00", "FLUSH"),
        ("FUNCTION", "LOAD", "REPLACE", replacing(library)),
        ("FUNCTION", "KILL"),
        ("SCRIPT", "FLUSH"),
        ("SCRIPT", "KILL"),
        ("SCRIPT", "DEBUG", "SYNC"),
        ("SCAN", "0", "MATCH", "*"),
        ("RANDOMKEY",),
        ("KEYS", "*"),
    ]
    try:
        for attack in attacks:
            with pytest.raises(redis.exceptions.NoPermissionError):
                command(client, *attack)
        # Still there, and still its own code (LOAD REPLACE would answer 666).
        assert command(redis_acl.root, "FCALL", f"{library}_f", "0") == 7
        assert redis_acl.root.get(other_key) == b"theirs"
    finally:
        redis_acl.root.delete(other_key)
        client.close()


def test_scripts_and_functions_still_run_on_the_keys_own_keys(
    redis_acl: RedisHarness, library: str
) -> None:
    client = as_key(redis_acl, ["read", "write", "scripting"])
    mine = f"{redis_acl.base}:counter"
    assert command(client, "EVAL", "return redis.call('INCR', KEYS[1])", "1", mine) == 1
    sha = command(client, "SCRIPT", "LOAD", "return redis.call('GET', KEYS[1])")
    assert command(client, "EVALSHA", sha, "1", mine) == b"1"
    assert command(client, "FCALL", f"{library}_f", "0") == 7
    # A script is held to the key's patterns as well.
    with pytest.raises(redis.exceptions.ResponseError, match=r"(?i)permission|NOPERM"):
        command(client, "EVAL", "return redis.call('GET', KEYS[1])", "1", "elsewhere")
    client.close()


@pytest.mark.parametrize(
    "named",
    [
        "function",
        "function|delete",
        "function|flush",
        "function|restore",
        "function|load",
        "function|kill",
        "script",
        "script|flush",
        "script|kill",
        "script|debug",
        "scan",
        "randomkey",
        "keys",
    ],
)
def test_they_cannot_be_named_one_by_one(named: str) -> None:
    with pytest.raises(ParamError, match="other users' keys, functions or scripts") as caught:
        RedisAclProvider().check_params({"commands": ["get", named]})
    assert caught.value.field == "commands"
    RedisAclProvider().check_params({"commands": ["get", f"-{named}"]})  # taking away is fine


@pytest.mark.parametrize(
    "named", ["function|list", "function|stats", "script|load", "script|exists", "eval", "fcall"]
)
def test_the_harmless_ones_can(named: str) -> None:
    RedisAclProvider().check_params({"commands": [named]})


def test_the_allow_list_narrows_categories_and_commands(redis_acl: RedisHarness) -> None:
    assert redis_acl.connection is not None
    url = redis_acl.connection.url + "?runkeys_grants=@read,@write,@connection,get"
    narrowed = Connection("CI_CACHE", url)
    for params, expected in [
        ({"categories": ["read", "scripting"]}, "categories: '@scripting'"),
        ({"categories": ["read"], "commands": ["info"]}, "commands: 'info'"),
    ]:
        label = redis_acl.label()
        with pytest.raises(ProviderError) as caught:
            redis_acl.mint({**redis_acl.params, **params}, connection=narrowed, label=label)
        assert not caught.value.retryable
        assert caught.value.cause.startswith(f"redis: refusing to mint: {expected} is not among")
        assert_clean(caught.value, redis_acl.secrets())
        assert redis_acl.leftovers(label) == []
    minted = redis_acl.mint({**redis_acl.params, "commands": ["get", "-del"]}, connection=narrowed)
    redis_acl.use(minted)
    redis_acl.revoke(minted, connection=narrowed)
    assert redis_acl.leftovers(minted.reference) == []
