"""Issue 15's policy matrix, served: `POST /v1/keys` on real PostgreSQL, MariaDB and Redis
against one rule bound to the repository, `main`, `push` and the shared reusable workflow.
Each denied request differs from the allowed one in one claim or one key field (the
almost-right ones: `main-evil`, `pull_request_target` on main, the shared workflow at another
branch, 61 minutes of an hour, `app*` for `app:`); it must name the rule (or "no rule
matched"), the claim or field and the fix, and leave nothing: no account on any of the three
servers, no lease, nothing written to the stand-in. The allowed request mints, and each value
logs in, within what the rule allows."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import redis
from flask import Flask
from sqlalchemy import select

from handler.ledger import tables
from handler.policy import NO_RULE
from runkeys.broker import new_key_pair
from runkeys.leases import SecretTarget
from runkeys_sandbox.server import RunClaims
from tests.providers.harness_mysql import connect_url
from tests.service.conftest import GitHub
from tests.service.kit import Clock, js
from tests.service.test_keys_api import (
    NOTHING,
    app_with_policy,
    minted_accounts,
    names,
    post,
    request_body,
    unsealed,
)
from tests.services import need

RULE = "app-main"
HAND_MADE = "the platform team's own value"


def schema() -> str:
    """The MariaDB database the rule allows: the one the service's connection names."""
    return urllib.parse.urlsplit(need("mysql")).path.lstrip("/")


def shared_workflow(owner: str, ref: str = "refs/heads/main") -> str:
    return f"{owner}/shared/.github/workflows/integration.yml@{ref}"


def policy(owner: str) -> str:
    return f"""\
version: 1
rules:
  - name: {RULE}
    match:
      repository: {owner}/app
      ref: refs/heads/main
      event_name: push
      job_workflow_ref: {shared_workflow(owner)}
    max_keys: 4
    destinations:
      environments: ["ci-run-*"]
    allow:
      - provider: postgres
        connection: ci_db
        max_ttl: 1h
      - provider: mysql
        connection: ci_my
        max_ttl: 1h
        privileges: [SELECT]
        schemas: [{schema()}]
      - provider: redis
        connection: ci_cache
        max_ttl: 1h
        categories: ["@read"]
        commands: [set]
        key_prefixes: ["app:"]
      - provider: random
        max_ttl: 1h
"""


@pytest.fixture
def broker(
    environ: dict[str, str], github: GitHub, tmp_path: Path, clock: Clock
) -> Iterator[Flask]:
    yield from app_with_policy(policy(github.repo.account.login), environ, tmp_path, clock)


def allowed_keys() -> dict[str, str]:
    """Each key's parameters in the allowed request: at the rule's limits where it has one."""
    return {
        "pg": "{provider: postgres, connection: ci_db, ttl: 30m}",
        "my": "{provider: mysql, connection: ci_my, ttl: 1h,"
        f" grant: [{{database: {schema()}, privileges: [SELECT]}}]}}",
        "cache": "{provider: redis, connection: ci_cache, ttl: 30m, categories: ['@read'],"
        " commands: [set], keys: ['app:*']}",
        "token": "{provider: random, ttl: 30m}",
    }


def keys_spec(keys: dict[str, str], changed: dict[str, str]) -> str:
    """The allowed spec with `changed` keys' parameters replaced, those last: a broker that
    minted key by key before deciding would have minted the others by then."""
    params = allowed_keys()
    order = [k for k in params if k not in changed] + list(changed)
    return "".join(f"{keys[k]}: {changed.get(k, params[k])}\n" for k in order)


def allowed_claims(github: GitHub, **changed: Any) -> RunClaims:
    """A push to main running the shared workflow (the sandbox's token names the repository's
    own `ci.yml` unless told)."""
    workflow = changed.pop("job_workflow_ref", shared_workflow(github.repo.account.login))
    return github.claims(extra={"job_workflow_ref": workflow}, **changed)


def stand_in(github: GitHub) -> dict[str, list[str]]:
    """The repository's secrets, its environments and theirs, as the stand-in holds them."""
    repo = github.repo
    held = {"repository": sorted(github.sandbox.secret_names(repo))}
    for environment in github.sandbox.environment_names(repo):
        held[f"environment {environment}"] = sorted(github.sandbox.secret_names(repo, environment))
    return held


def seed(broker: Flask, github: GitHub) -> None:
    """The platform team's own secrets, so that "unchanged" compares something."""
    store = broker.extensions["runkeys"].secrets_for(github.repo.full_name)
    store.create_environment("staging")
    for environment in (None, "staging"):
        store.put(SecretTarget(github.repo.full_name, "DEPLOY_TOKEN", environment), HAND_MADE)


DESTINATION = {"kind": "environment", "environment": "ci-run-{run_id}"}


@pytest.mark.parametrize(
    ("claims", "changed", "rule", "field", "reason", "fix"),
    [
        pytest.param(  # almost right: `main` as a prefix
            {"ref": "refs/heads/main-evil"},
            {},
            NO_RULE,
            "ref",
            "the token's ref is 'refs/heads/main-evil'; the rule wants 'refs/heads/main'",
            "run from a ref the rule names",
            id="branch main-evil",
        ),
        pytest.param(
            {"ref": "refs/heads/feature"},
            {},
            NO_RULE,
            "ref",
            "the token's ref is 'refs/heads/feature'",
            "run from a ref the rule names",
            id="another branch",
        ),
        pytest.param(  # a pull request's run: its merge ref and its event, both named
            {"ref": "refs/pull/7/merge", "event_name": "pull_request"},
            {},
            NO_RULE,
            "ref, event_name",
            "the token's event_name is 'pull_request'; the rule wants 'push'",
            "run from a ref and event_name the rule names",
            id="pull request",
        ),
        pytest.param(  # almost right: a pull request's code, run with main's ref
            {"event_name": "pull_request_target"},
            {},
            NO_RULE,
            "event_name",
            "the token's event_name is 'pull_request_target'; the rule wants 'push'",
            "run from a event_name the rule names",
            id="pull_request_target on main",
        ),
        pytest.param(  # the repository's own workflow, which any writer may edit
            {"job_workflow_ref": "{owner}/app/.github/workflows/ci.yml@refs/heads/main"},
            {},
            NO_RULE,
            "job_workflow_ref",
            "the token's job_workflow_ref is "
            "'{owner}/app/.github/workflows/ci.yml@refs/heads/main'",
            "run from a job_workflow_ref the rule names",
            id="own workflow",
        ),
        pytest.param(  # almost right: the shared workflow, at a branch of it
            {"job_workflow_ref": "{owner}/shared/.github/workflows/integration.yml@refs/heads/x"},
            {},
            NO_RULE,
            "job_workflow_ref",
            "integration.yml@refs/heads/x'; the rule wants '{owner}/shared/",
            "run from a job_workflow_ref the rule names",
            id="shared workflow at a branch",
        ),
        pytest.param(  # almost right: the same path under another owner
            {
                "job_workflow_ref": "{other}/shared/.github/workflows/"
                "integration.yml@refs/heads/main"
            },
            {},
            NO_RULE,
            "job_workflow_ref",
            "the token's job_workflow_ref is '{other}/shared/",
            "run from a job_workflow_ref the rule names",
            id="another owner's shared workflow",
        ),
        pytest.param(  # almost right: one minute over
            {},
            {"my": "{provider: mysql, connection: ci_my, ttl: 61m}"},
            RULE,
            "ttl",
            "1h1m is longer than the rule's max_ttl of 1h",
            "set `ttl: 1h` or less on {my}",
            id="ttl over max_ttl",
        ),
        pytest.param(  # almost right: all but one privilege allowed
            {},
            {
                "my": "{provider: mysql, connection: ci_my, ttl: 30m,"
                " grant: [{database: {schema}, privileges: [SELECT, DELETE]}]}"
            },
            RULE,
            "grant[0].privileges",
            "'DELETE' not among the privileges the rule allows (SELECT)",
            "ask only for some of: SELECT",
            id="mysql privilege",
        ),
        pytest.param(  # almost right: another database named after the allowed one
            {},
            {
                "my": "{provider: mysql, connection: ci_my, ttl: 30m,"
                " grant: [{database: {schema}_shop, privileges: [SELECT]}]}"
            },
            RULE,
            "grant[0].database",
            "'{schema}_shop' not among the schemas the rule allows ({schema})",
            "ask only for some of: {schema}",
            id="mysql schema",
        ),
        pytest.param(
            {},
            {
                "cache": "{provider: redis, connection: ci_cache, ttl: 30m,"
                " categories: ['@read', '@write'], keys: ['app:*']}"
            },
            RULE,
            "categories",
            "'write' not among the categories the rule allows (read)",
            "ask only for some of: read",
            id="redis category",
        ),
        pytest.param(
            {},
            {
                "cache": "{provider: redis, connection: ci_cache, ttl: 30m,"
                " categories: ['@read'], commands: [set, del], keys: ['app:*']}"
            },
            RULE,
            "commands",
            "'del' not among the commands the rule allows (set)",
            "ask only for some of: set",
            id="redis command",
        ),
        pytest.param(  # almost right: `app*` reaches `apple:…` too
            {},
            {
                "cache": "{provider: redis, connection: ci_cache, ttl: 30m,"
                " categories: ['@read'], keys: ['app:*', 'app*']}"
            },
            RULE,
            "keys",
            "'app*' is not under a prefix the rule allows (app:)",
            "start every pattern with one of: app:",
            id="redis key pattern",
        ),
    ],
)
def test_a_request_one_step_outside_the_rule_is_denied_naming_why_and_leaves_nothing(  # noqa: PLR0917
    broker: Flask,
    github: GitHub,
    claims: dict[str, Any],
    changed: dict[str, str],
    rule: str,
    field: str,
    reason: str,
    fix: str,
) -> None:
    keys = names() | {"my": f"MY{uuid.uuid4().hex[:8]}"}
    words = {"owner": github.repo.account.login, "other": github.other_repo.account.login}
    words |= {"schema": schema(), "my": keys["my"]}

    def filled(text: str) -> str:  # the parameters' placeholders, leaving YAML's braces
        for name, value in words.items():
            text = text.replace(f"{{{name}}}", value)
        return text

    seed(broker, github)
    before = stand_in(github)
    github.sandbox.clear_requests()
    token = allowed_claims(github, **{k: filled(v) for k, v in claims.items()})
    text = keys_spec(keys, {k: filled(v) for k, v in changed.items()})
    _, public = new_key_pair()
    response = post(
        broker.test_client(),
        request_body(text, public, destination=DESTINATION),
        github.auth(token),
    )

    assert response.status_code == 403, js(response)
    body = js(response)
    assert body["error"] == "policy_denied"
    # Every key when the token matches no rule; the one changed key when a limit fails.
    denied = [keys[k] for k in (changed or allowed_keys())]
    assert body["key"] == denied[0]
    assert [d.split(":", 1)[0] for d in body["denied"]] == denied
    first = body["denied"][0]
    assert first.startswith(f"{denied[0]}: denied by {rule}: {field}: ")
    assert filled(reason) in first
    assert f"; fix: {filled(fix)}" in first
    assert body["message"].startswith(first + ". Nothing was minted")
    # Nothing minted, written, nor leased; the denial audited.
    assert minted_accounts(keys) == NOTHING
    assert stand_in(github) == before
    writes = [r for r in github.sandbox.requests if r.method != "GET" and "/repos/" in r.path]
    assert writes == []
    with broker.extensions["runkeys"].ledger.begin() as conn:
        assert list(conn.execute(select(tables.leases))) == []
        assert list(conn.execute(select(tables.broker_requests))) == []
        decided = list(conn.execute(select(tables.policy_decisions)))
    assert [(d.outcome, d.rules) for d in decided] == [("deny", [rule])]
    audited = {k["name"]: (k["outcome"], k["field"]) for k in decided[0].keys}
    assert {name: audited[name] for name in denied} == dict.fromkeys(denied, ("deny", field))


def test_the_request_each_denial_is_one_step_from_is_allowed_and_every_value_logs_in(
    broker: Flask, github: GitHub
) -> None:
    keys = names() | {"my": f"MY{uuid.uuid4().hex[:8]}"}
    seed(broker, github)
    before = stand_in(github)
    private, public = new_key_pair()
    token = allowed_claims(github)
    data = request_body(keys_spec(keys, {}), public, destination=DESTINATION)
    response = post(broker.test_client(), data, github.auth(token))

    assert response.status_code == 201, js(response)
    opened = unsealed(private, response)
    assert sorted(opened) == sorted(keys.values())
    minted = minted_accounts(keys)
    assert {server: len(accounts) for server, accounts in minted.items()} == {
        "postgres": 1,
        "mysql": 1,
        "redis": 1,
    }
    with psycopg.connect(opened[keys["pg"]].value) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (minted["postgres"][0],)
    # MariaDB: the granted schema, to read and no more.
    with connect_url(opened[keys["my"]].value) as mysql, mysql.cursor() as cursor:
        cursor.execute("SELECT DATABASE()")
        assert cursor.fetchone() == (schema(),)
        with pytest.raises(pymysql.err.MySQLError) as refused:
            cursor.execute(f"CREATE TABLE rk_matrix_{uuid.uuid4().hex[:8]} (id int)")
        assert refused.value.args[0] == 1142  # ER_TABLEACCESS_DENIED_ERROR
    # Redis: `@read` and `set`, under `app:` only.
    cache = redis.Redis.from_url(opened[keys["cache"]].value)
    try:
        name = f"app:matrix:{uuid.uuid4().hex[:8]}"
        assert cache.set(name, "1", ex=60)
        assert cache.get(name) == b"1"
        with pytest.raises(redis.exceptions.NoPermissionError):
            cache.set(f"apple:{uuid.uuid4().hex[:8]}", "1", ex=60)
        with pytest.raises(redis.exceptions.NoPermissionError):
            cache.delete(name)
    finally:
        cache.close()
    # Written into the run's environment; the team's own secrets as they were.
    environment = f"ci-run-{token.run_id}"
    assert stand_in(github) == before | {
        f"environment {environment}": sorted(k.upper() for k in keys.values())
    }
    for key_name, key in opened.items():
        assert github.sandbox.secret_value(github.repo, key_name, environment) == key.value
    with broker.extensions["runkeys"].ledger.begin() as conn:
        decided = list(conn.execute(select(tables.policy_decisions)))
    assert [(d.outcome, d.rules) for d in decided] == [("allow", [RULE])]
