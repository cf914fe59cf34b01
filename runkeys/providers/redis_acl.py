"""`redis`: an ACL user per key (Redis 7.0 or newer), limited to the key patterns, channel
patterns, command categories and commands the spec names.

Every rule is its own argument of `ACL SETUSER`, checked against an allow list and a strict
syntax first, so no parameter can smuggle in a rule of its own (`on`, `>password`, `+@all`).
Redis has no expiry for a user: the sweeper keeps the TTL. Details: docs/providers.md#redis."""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from runkeys.connections import Connection
from runkeys.errors import ParamError, ProviderError
from runkeys.providers.base import (
    # Repeated on purpose: each provider imports the base helpers it uses (a list, not logic).
    DatabaseAccount,
    Minted,
    MintRequest,
    Provider,
    RevokeRequest,
    check_allow_list,
    check_known,
    connection_of,
    get_str_list,
    is_transient,
    new_password,
    runkeys_account,
    unparsed_url,
)

PARAMS = {"keys", "channels", "categories", "commands"}
# Command categories a test credential may have: data and connection ones, never `all`,
# `admin` or `dangerous`.
CATEGORIES = frozenset(
    {"read", "write", "keyspace", "string", "list", "hash", "set", "sortedset", "stream"}
    | {"bitmap", "hyperloglog", "geo", "pubsub", "transaction", "connection", "fast", "slow"}
    | {"scripting", "blocking"}
)
# Commands (and subcommands) that administer the server, or act on every key whatever the
# user's patterns: never granted, even by name. From `ACL CAT admin` and `ACL CAT dangerous`.
REFUSED_COMMANDS = frozenset(
    {"acl", "bgrewriteaof", "bgsave", "cluster", "config", "debug", "failover", "lastsave"}
    | {"latency", "module", "monitor", "pfdebug", "pfselftest", "psync", "replconf"}
    | {"replicaof", "role", "save", "shutdown", "slaveof", "slowlog", "sync", "flushall"}
    | {"flushdb", "swapdb", "migrate", "restore", "restore-asking", "client|kill"}
    | {"client|list", "client|pause", "client|unpause", "client|no-evict", "client|unblock"}
)
# Commands of the granted categories that reach past the user's key patterns (other users'
# functions and scripts, every key name): always taken away (docs/providers.md#redis says why).
ACTS_ON_OTHERS = (
    "function|delete",
    "function|flush",
    "function|restore",
    "function|load",
    "function|kill",
    "script|flush",
    "script|kill",
    "script|debug",
    "scan",
    "randomkey",
    "keys",
)
MAX_PATTERNS = 32
_PATTERN = re.compile(r"^[A-Za-z0-9_:.*?\[\]{}/=#@!^$+-]{1,128}$")
_COMMAND = re.compile(r"^-?[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)?$")
_SCHEMES = ("redis", "rediss")
CONNECT_TIMEOUT = 5.0  # seconds
COMMAND_TIMEOUT = 15.0


# Repeated on purpose: every provider declares the same Provider interface (name, params).
class RedisAclProvider(Provider):
    name = "redis"
    needs_connection = True

    def check_params(self, params: Mapping[str, Any]) -> None:
        check_known(params, PARAMS)
        for field in ("keys", "channels"):
            patterns = get_str_list(params, field)
            if len(patterns) > MAX_PATTERNS:
                raise ParamError(field, f"more than {MAX_PATTERNS} patterns")
            for pattern in patterns:
                if not _PATTERN.fullmatch(pattern):
                    raise ParamError(
                        field,
                        f"{pattern!r} is not a plain glob pattern",
                        fix="letters, digits and _ : . * ? [ ] { } / = # @ ! ^ $ + -, no spaces",
                    )
        for category in get_str_list(params, "categories"):
            if category.lstrip("+@") not in CATEGORIES:
                raise ParamError(
                    "categories",
                    f"{category!r} is not a category runkeys grants",
                    fix="use some of: " + ", ".join(sorted(CATEGORIES)),
                )
        for command in get_str_list(params, "commands"):
            _check_command(command)

    def check_allowed(self, params: Mapping[str, Any], connection: Connection) -> None:
        """The allow list names categories as ACL rules do (`@read`) and commands as the spec
        does (`get`, `client|setname`); taking a command away is always allowed."""
        categories = [f"@{c.lstrip('+@')}" for c in get_str_list(params, "categories")]
        check_allow_list("categories", categories, connection, "categories")
        commands = [c for c in get_str_list(params, "commands") if not c.startswith("-")]
        check_allow_list("commands", commands, connection, "commands")

    def mint(self, request: MintRequest) -> Minted:
        connection = connection_of(self.name, request)
        user = runkeys_account(self.name, "label", request.label)
        self.refuse_disallowed(request, connection)
        password = new_password()
        parts = _checked_url(connection)
        database = int(parts.path.lstrip("/") or 0)
        with self.scrubbed("mint", password, *connection.secrets()), _client(connection) as admin:
            if admin.execute_command("ACL", "GETUSER", user) is not None:
                raise ProviderError(
                    self.name, f"user {user} already exists", retryable=False, fix="a new label"
                )
            rules = _rules(request.params, password, select=database != 0)
            admin.execute_command("ACL", "SETUSER", user, *rules)
        account = DatabaseAccount(
            user, password, parts.hostname or "127.0.0.1", parts.port or 6379, str(database)
        )
        return account.minted(parts.scheme, reference=user, expires_at=request.expires_at)

    def revoke(self, request: RevokeRequest) -> None:
        connection = connection_of(self.name, request)
        user = runkeys_account(self.name, "reference", request.reference)
        _checked_url(connection)
        with self.scrubbed("revoke", *connection.secrets()), _client(connection) as admin:
            transaction = admin.pipeline(transaction=True)
            transaction.execute_command("CLIENT", "KILL", "USER", user)
            transaction.execute_command("ACL", "DELUSER", user)
            killed, _ = transaction.execute(raise_on_error=False)
            if isinstance(killed, Exception) and "no such user" not in str(killed).lower():
                raise killed

    def is_transient(self, exc: BaseException) -> bool:
        # redis-py files a refused password or a missing permission under ConnectionError too.
        if isinstance(
            exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError
        ):
            return False
        if isinstance(
            exc,
            redis.exceptions.ConnectionError
            | redis.exceptions.TimeoutError
            | redis.exceptions.TryAgainError,
        ):
            return True
        return is_transient(exc)


def _check_command(command: str) -> None:
    if not _COMMAND.fullmatch(command):
        raise ParamError(
            "commands",
            f"{command!r} is not a command name",
            fix="a lowercase name, `name|subcommand`, or `-name` to take one away",
        )
    name = command.lstrip("-")
    top = name.partition("|")[0]
    refused = (*REFUSED_COMMANDS, *ACTS_ON_OTHERS)
    # A whole command whose subcommands include refused ones (`client`) is refused as well.
    whole = name == top and any(r.startswith(top + "|") for r in refused)
    if (name in refused or top in refused or whole) and not command.startswith("-"):
        raise ParamError(
            "commands",
            f"{name!r} administers the server or acts on other users' keys, functions or scripts",
            fix="a test credential cannot have it; use a separate, long-lived admin account",
        )


def _rules(params: Mapping[str, Any], password: str, *, select: bool) -> list[str]:
    """The `ACL SETUSER` rules, one argument each, from parameters `check_params` accepted."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    rules = ["reset", "on", f"#{digest}", "resetchannels"]
    rules += [f"~{pattern}" for pattern in get_str_list(params, "keys")]
    rules += [f"&{pattern}" for pattern in get_str_list(params, "channels")]
    rules += [f"+@{c.lstrip('+@')}" for c in get_str_list(params, "categories")]
    rules += ["-@admin", "-@dangerous", *(f"-{command}" for command in ACTS_ON_OTHERS)]
    for command in get_str_list(params, "commands"):
        rules.append(command if command.startswith("-") else f"+{command}")
    if select:  # clients send SELECT for a database other than 0 before anything else
        rules.append("+select")
    return rules


def _checked_url(connection: Connection) -> urllib.parse.SplitResult:
    parts = connection.parsed
    path = parts.path.lstrip("/")
    try:
        _ = parts.hostname, parts.port
    except ValueError:  # its message quotes what it took for the port: a password's start
        raise unparsed_url("redis", connection, "redis://user:password@host:6379/0") from None
    if parts.scheme not in _SCHEMES or (path and not path.isdigit()):
        raise ProviderError(
            "redis",
            f"{connection.name}: not a Redis URL",
            retryable=False,
            fix="use redis://user:password@host:6379/0 (rediss:// for TLS)",
        )
    return parts


def _client(connection: Connection) -> redis.Redis:
    # ACL users are server-wide: the admin stays on database 0 and needs no SELECT.
    without_database = urllib.parse.urlunsplit(connection.parsed._replace(path=""))
    return redis.Redis.from_url(
        without_database,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        # No retries in here: redis-py would retry a refused password as a connection error
        # for seconds; the caller retries what `is_transient` calls retryable.
        retry=Retry(NoBackoff(), 0),
    )
