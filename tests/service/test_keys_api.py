"""`POST /v1/keys` (broker mode) through the Flask test client: the service mints with its own
connections and App, gated by its policy, and answers each value sealed to the runner's key.
Hostile cases first: each says what must be left behind (nothing), checked on the databases
themselves and on the stand-in's secrets; the tests unseal with the key pair they made."""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from nacl.public import PrivateKey
from sqlalchemy import event, select
from werkzeug.test import TestResponse

from handler.app import create_app
from handler.broker import grant
from handler.errors import ApiError
from handler.ledger import tables
from handler.ledger.broker import claim_request, grant_request
from handler.logs import JsonFormatter
from handler.worker import RevocationWorker
from runkeys.broker import KeysGranted, Unsealed, new_key_pair, unseal
from tests.encoded_forms import encoded_forms
from tests.providers.harness_mysql import connect_url
from tests.service.attack_kit import _mysql, _postgres, _redis, connections, run_worker
from tests.service.conftest import GitHub
from tests.service.kit import Clock, assert_documented, identity, js, run_cli

MISSING_ROLE = "rk_test_no_such_role"  # allowed by the policy, absent from the server


def policy(owner: str) -> str:
    """The platform team's policy: `owner/app` may mint, within these bounds, nothing else."""
    return f"""\
version: 1
rules:
  - name: app-ci
    match:
      repository: {owner}/app
    max_keys: 4
    destinations:
      job: true
      environments: ["ci-pr-*", "ci-run-*"]
    allow:
      - provider: postgres
        connection: ci_db
        max_ttl: 1h
        grant: [{MISSING_ROLE}]
      - provider: redis
        connection: ci_cache
        max_ttl: 1h
        categories: ["@read"]
        key_prefixes: ["app:"]
      - provider: mysql
        connection: ci_my
        max_ttl: 1h
      - provider: random
        max_ttl: 1h
"""


def app_with_policy(
    text: str, environ: dict[str, str], tmp_path: Path, clock: Clock
) -> Iterator[Flask]:
    """The service with its own connections and this policy; afterwards the worker retires
    what the test minted, as after a real run."""
    path = tmp_path / "policy.yml"
    path.write_text(text)
    made = create_app(environ | connections() | {"RUNKEYS_POLICY_FILE": str(path)}, clock=clock)
    yield made
    service = made.extensions["runkeys"]
    with service.ledger.begin() as conn:
        live = [r.id for r in conn.execute(select(tables.leases)) if r.state == "active"]
    if live:
        run_worker(made, *live)
    service.close()


@pytest.fixture
def broker(
    environ: dict[str, str], github: GitHub, tmp_path: Path, clock: Clock
) -> Iterator[Flask]:
    yield from app_with_policy(policy(github.repo.account.login), environ, tmp_path, clock)


@pytest.fixture
def client(broker: Flask) -> FlaskClient:
    return broker.test_client()


def names() -> dict[str, str]:
    """Key names no other test uses (a label keeps 12 characters of the name)."""
    tag = uuid.uuid4().hex[:8]
    return {"pg": f"PG{tag}", "cache": f"RD{tag}", "token": f"TK{tag}"}


def spec(keys: dict[str, str], *, pg_ttl: str = "30m", extra: str = "") -> str:
    return (
        f"{keys['pg']}: {{provider: postgres, connection: ci_db, ttl: {pg_ttl}}}\n"
        f"{keys['cache']}: {{provider: redis, connection: ci_cache, ttl: 30m,"
        " categories: ['@read'], keys: ['app:*']}\n"
        f"{keys['token']}: {{provider: random, ttl: 30m}}\n" + extra
    )


def request_body(keys: str, public_key: str, **fields: Any) -> dict[str, Any]:
    return {
        "request_id": fields.pop("request_id", uuid.uuid4().hex),
        "keys": keys,
        "destination": fields.pop("destination", {"kind": "job"}),
        "public_key": public_key,
        **fields,
    }


def post(client: FlaskClient, data: Any, headers: dict[str, str]) -> TestResponse:
    response = client.post("/v1/keys", json=data, headers=headers)
    assert_documented("POST", "/v1/keys", response.status_code, response.json)
    return response


def pr_claims(github: GitHub, number: int = 7) -> Any:
    return github.claims(ref=f"refs/pull/{number}/merge", event_name="pull_request")


NOTHING: dict[str, list[str]] = {"postgres": [], "mysql": [], "redis": []}


def _text(name: str | bytes) -> str:
    return name.decode() if isinstance(name, bytes) else name


def minted_accounts(keys: dict[str, str]) -> dict[str, list[str]]:
    """The accounts PostgreSQL (roles), MariaDB (`mysql.user`) and Redis (ACL users) hold for
    these key names, whichever provider a key named, asked with the admin connections. Other
    sessions mint on the same servers meanwhile, so a catalog is read for these names only:
    every account runkeys makes for a key carries its name (`rk_<digest>_<name>`)."""
    suffixes = tuple("_" + name.lower() for name in keys.values())
    found = {
        "postgres": [r[0] for r in _postgres("SELECT rolname FROM pg_roles")],
        "mysql": [_text(r[0]) for r in _mysql("SELECT User FROM mysql.user")],
        "redis": [_text(u) for u in _redis("ACL", "USERS")],
    }
    return {
        server: sorted(a for a in accounts if a.startswith("rk_") and a.endswith(suffixes))
        for server, accounts in found.items()
    }


def unsealed(private: PrivateKey, response: TestResponse) -> dict[str, Unsealed]:
    granted = msgspec.json.decode(response.data, type=KeysGranted)
    return {key.name: unseal(private, key.sealed) for key in granted.keys}


def test_keys_are_minted_with_the_services_connections_and_sealed_to_the_runner(
    client: FlaskClient, github: GitHub, broker: Flask
) -> None:
    private, public = new_key_pair()
    keys = names()
    claims = pr_claims(github, 7)
    keys["my"] = f"MY{keys['pg'][2:]}"
    mariadb = f"{keys['my']}: {{provider: mysql, connection: ci_my, ttl: 30m}}\n"
    data = request_body(
        spec(keys, extra=mariadb),
        public,
        destination={"kind": "environment", "environment": "ci-pr-{pr}"},
    )
    response = post(client, data, github.auth(claims))
    assert response.status_code == 201, response.json
    assert js(response)["created_environment"] == "ci-pr-7"
    assert response.headers["Cache-Control"] == "no-store"
    opened = unsealed(private, response)
    assert sorted(opened) == sorted(keys.values())
    # The values work: the databases let the minted accounts in.
    with psycopg.connect(opened[keys["pg"]].value) as conn:
        assert conn.execute("SELECT current_user").fetchone() is not None
    # A key with no grant may log in, not use the URL's database: log in without one.
    login = urllib.parse.urlsplit(opened[keys["my"]].value)._replace(path="").geturl()
    with connect_url(login) as mysql, mysql.cursor() as cursor:
        cursor.execute("SELECT CURRENT_USER()")
        assert cursor.fetchone() is not None
    cache = redis.Redis.from_url(opened[keys["cache"]].value)
    assert cache.get("app:absent") is None  # logged in, and may read under app:
    cache.close()
    # The environment's secrets hold the same values, written by the service's App.
    for name, key in opened.items():
        assert github.sandbox.secret_value(github.repo, name, "ci-pr-7") == key.value
    assert "ci-pr-7" in github.sandbox.environment_names(github.repo)
    # The leases are the token's run's, in the ledger, naming the environment it created.
    with broker.extensions["runkeys"].ledger.begin() as conn:
        rows = list(conn.execute(select(tables.leases)))
        environments = list(conn.execute(select(tables.environments)))
        decisions = list(conn.execute(select(tables.policy_decisions)))
    assert sorted(r.key_name for r in rows) == sorted(keys.values())
    assert {(r.run_id, r.pr_number, r.secret_environment) for r in rows} == {
        (claims.run_id, 7, "ci-pr-7")
    }
    assert [(e.name, e.claimed) for e in environments] == [("ci-pr-7", True)]
    assert [(d.outcome, d.rules, d.repository) for d in decisions] == [
        ("allow", ["app-ci"], github.repo.full_name)
    ]
    assert sorted(k["name"] for k in decisions[0].keys) == sorted(keys.values())
    # The run's end retires them as in local mode: accounts dropped, environment deleted.
    run_worker(broker, *(r.id for r in rows))
    assert minted_accounts(keys) == NOTHING
    assert "ci-pr-7" not in github.sandbox.environment_names(github.repo)


def test_without_a_policy_broker_mode_is_off(
    environ: dict[str, str], github: GitHub, clock: Clock
) -> None:
    made = create_app(environ | connections(), clock=clock)
    try:
        _, public = new_key_pair()
        keys = names()
        response = post(
            made.test_client(), request_body(spec(keys), public), github.auth(github.claims())
        )
    finally:
        made.extensions["runkeys"].close()
    assert response.status_code == 404
    assert js(response)["error"] == "broker_off"
    assert "RUNKEYS_POLICY_FILE" in js(response)["message"]
    assert minted_accounts(keys) == NOTHING


@pytest.mark.parametrize("whose", ["same owner", "another owner"])
def test_a_token_of_a_sibling_repository_is_denied(
    client: FlaskClient, github: GitHub, broker: Flask, whose: str
) -> None:
    if whose == "same owner":  # `app-tools`: the policy's `owner/app` as a prefix
        sibling = github.sandbox.add_repository(f"{github.repo.account.login}/app-tools")
        repositories = [github.repo, sibling]
        github.sandbox.update_installation(github.installation, repositories=repositories)
    else:  # `<other owner>/app`, where the App is installed too
        sibling = github.sandbox.add_repository(f"{github.other_repo.account.login}/app")
        repositories = [github.other_repo, sibling]
        github.sandbox.update_installation(github.other_installation, repositories=repositories)
    _, public = new_key_pair()
    keys = names()
    data = request_body(
        spec(keys), public, destination={"kind": "environment", "environment": "ci-run-{run_id}"}
    )
    response = post(client, data, github.auth(github.claims(repo=sibling)))
    assert response.status_code == 403, response.json
    assert js(response)["error"] == "policy_denied"
    assert "no rule matched" in js(response)["message"]
    assert "repository" in js(response)["message"]
    assert minted_accounts(keys) == NOTHING
    assert github.sandbox.environment_names(sibling) == []
    with broker.extensions["runkeys"].ledger.begin() as conn:
        assert list(conn.execute(select(tables.leases))) == []
        denied = list(conn.execute(select(tables.policy_decisions)))
    assert [(d.outcome, d.repository) for d in denied] == [("deny", sibling.full_name)]


def test_a_body_naming_a_repository_is_refused_before_anything(
    client: FlaskClient, github: GitHub
) -> None:
    _, public = new_key_pair()
    keys = names()
    data = request_body(spec(keys), public, repository=github.other_repo.full_name)
    response = post(client, data, github.auth(github.claims()))
    assert response.status_code == 400
    assert "repository" in js(response)["message"]
    assert minted_accounts(keys) == NOTHING


@pytest.mark.parametrize("bad", ["bytes: !!int x", "ttl: !!timestamp x"])
def test_a_spec_yaml_cannot_construct_is_refused_not_a_crash(
    client: FlaskClient, github: GitHub, bad: str
) -> None:
    _, public = new_key_pair()
    keys = names()
    data = request_body(spec(keys, extra=f"TOO: {{provider: random, {bad}}}\n"), public)
    response = post(client, data, github.auth(github.claims()))
    assert response.status_code == 422
    assert js(response)["error"] == "invalid_spec"
    assert "not valid YAML" in js(response)["message"]
    assert minted_accounts(keys) == NOTHING


def test_pr_placeholder_on_a_push_run_is_refused(client: FlaskClient, github: GitHub) -> None:
    _, public = new_key_pair()
    keys = names()
    data = request_body(
        spec(keys), public, destination={"kind": "environment", "environment": "ci-pr-{pr}"}
    )
    response = post(client, data, github.auth(github.claims(ref="refs/heads/main")))
    assert response.status_code == 422
    assert js(response)["error"] == "invalid_destination"
    assert "{pr}" in js(response)["message"]
    assert minted_accounts(keys) == NOTHING
    assert github.sandbox.environment_names(github.repo) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"pg_ttl": "2h"}, "ttl"),  # over the rule's max_ttl of 1h
        (  # 5 keys of 4
            {"extra": "EXTRA1: {provider: random, ttl: 5m}\nEXTRA2: {provider: random, ttl: 5m}\n"},
            "max_keys",
        ),
        ({"destination": {"kind": "repository"}}, "destination"),
        ({"destination": {"kind": "environment", "environment": "prod"}}, "destination"),
    ],
)
def test_a_request_outside_the_policy_is_denied_and_mints_nothing(
    client: FlaskClient, github: GitHub, change: dict[str, Any], field: str
) -> None:
    _, public = new_key_pair()
    keys = names()
    change = dict(change)  # the parameters are shared by both ledgers' runs
    destination = change.pop("destination", {"kind": "job"})
    data = request_body(spec(keys, **change), public, destination=destination)
    response = post(client, data, github.auth(github.claims()))
    assert response.status_code == 403, response.json
    assert f"denied by app-ci: {field}:" in js(response)["message"]
    assert minted_accounts(keys) == NOTHING
    assert github.sandbox.secret_names(github.repo) == []
    assert github.sandbox.environment_names(github.repo) == []


def test_a_grant_outside_the_list_is_denied(client: FlaskClient, github: GitHub) -> None:
    _, public = new_key_pair()
    keys = names()
    text = spec(keys).replace("ci_db, ttl", "ci_db, grant: [app_admin], ttl")
    response = post(client, request_body(text, public), github.auth(github.claims()))
    assert response.status_code == 403, response.json
    assert "grant" in js(response)["message"]
    assert "app_admin" in js(response)["message"]
    assert minted_accounts(keys) == NOTHING


def test_minting_failing_at_the_third_key_leaves_nothing_behind(
    client: FlaskClient, github: GitHub, broker: Flask
) -> None:
    _, public = new_key_pair()
    keys = names()
    # Two keys mint; the third asks for a role the policy allows and the server lacks.
    text = (
        f"{keys['pg']}: {{provider: postgres, connection: ci_db, ttl: 30m}}\n"
        f"{keys['cache']}: {{provider: redis, connection: ci_cache, ttl: 30m,"
        " categories: ['@read'], keys: ['app:*']}\n"
        f"{keys['token']}: {{provider: postgres, connection: ci_db, ttl: 30m,"
        f" grant: [{MISSING_ROLE}]}}\n"
    )
    data = request_body(
        text, public, destination={"kind": "environment", "environment": "ci-run-{run_id}"}
    )
    response = post(client, data, github.auth(github.claims()))
    assert response.status_code == 502, response.json
    assert js(response)["error"] == "keys_not_issued"
    assert js(response)["message"].startswith(f"{keys['token']}: minting failed")
    assert minted_accounts(keys) == NOTHING
    third = [
        row
        for row in _postgres("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", "rk\\_%")
        if row[0].endswith("_" + keys["token"].lower())
    ]
    assert third == []
    assert github.sandbox.environment_names(github.repo) == []
    with broker.extensions["runkeys"].ledger.begin() as conn:
        assert list(conn.execute(select(tables.leases))) == []
        assert list(conn.execute(select(tables.broker_requests))) == []


def test_a_retried_request_mints_once(client: FlaskClient, github: GitHub, broker: Flask) -> None:
    _, public = new_key_pair()
    keys = names()
    claims = github.claims()
    data = request_body(spec(keys), public)
    first = post(client, data, github.auth(claims))
    assert first.status_code == 201
    lease_ids = sorted(k["lease_id"] for k in js(first)["keys"])
    again = post(client, data, github.auth(claims))  # a fresh token, the same request id
    assert again.status_code == 409
    assert js(again)["error"] == "request_repeated"
    assert sorted(js(again)["lease_ids"]) == lease_ids
    assert "sealed" not in again.data.decode()
    assert {k: len(v) for k, v in minted_accounts(keys).items()} == {
        "postgres": 1,
        "mysql": 0,
        "redis": 1,
    }
    with broker.extensions["runkeys"].ledger.begin() as conn:
        assert len(list(conn.execute(select(tables.leases)))) == 3
    # The same request id from another repository is that repository's own.
    other = github.sandbox.add_repository(f"{github.repo.account.login}/app2")
    github.sandbox.update_installation(github.installation, repositories=[github.repo, other])
    elsewhere = post(client, data, github.auth(github.claims(repo=other)))
    assert elsewhere.status_code == 403  # its own request: decided (and denied) afresh


def test_a_replayed_token_is_refused(client: FlaskClient, github: GitHub) -> None:
    _, public = new_key_pair()
    keys = names()
    headers = github.auth(github.claims())
    assert post(client, request_body(spec(keys), public), headers).status_code == 201
    replay = post(client, request_body(spec(names()), public), headers)
    assert replay.status_code == 401
    assert {k: len(v) for k, v in minted_accounts(keys).items()} == {
        "postgres": 1,
        "mysql": 0,
        "redis": 1,
    }


def leaks(text: str, values: list[str]) -> list[str]:
    return sorted({form for value in values for form in encoded_forms(value) if form in text})


def test_no_value_leaves_but_sealed(  # noqa: PLR0917
    client: FlaskClient,
    github: GitHub,
    broker: Flask,
    caplog: pytest.LogCaptureFixture,
    environ: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    github.sandbox.clear_requests()
    private, public = new_key_pair()
    keys = names()
    claims = pr_claims(github, 9)
    data = request_body(
        spec(keys), public, destination={"kind": "environment", "environment": "ci-pr-{pr}"}
    )
    response = post(client, data, github.auth(claims))
    assert response.status_code == 201
    opened = unsealed(private, response)
    # Where a key logs in (host, port, database) is no secret; the rest is.
    values = [
        part
        for key in opened.values()
        for name, part in [("VALUE", key.value), *key.parts.items()]
        if name not in {"HOST", "PORT", "DATABASE"}
    ]
    assert values
    sealed = [k["sealed"] for k in js(response)["keys"]]
    answer = response.data.decode()
    for blob in sealed:
        answer = answer.replace(blob, "")
    logs = "\n".join(r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records)
    service = broker.extensions["runkeys"]
    with service.ledger.begin() as conn:
        rows = "\n".join(str(list(conn.execute(select(t)))) for t in tables.metadata.sorted_tables)
    ledger_file = ""
    if environ["RUNKEYS_DATABASE_URL"].startswith("sqlite"):
        path = environ["RUNKEYS_DATABASE_URL"].removeprefix("sqlite:///")
        ledger_file = "".join(
            Path(p).read_bytes().decode("latin-1")
            for p in (path, path + "-wal")
            if Path(p).exists()
        )
    # The ledger keeps each lease's reference, which is the minted account's name: no secret.
    names_of = {p for k in opened.values() for n, p in k.parts.items() if n in {"USER", "USERNAME"}}
    secret = [v for v in values if v not in names_of]
    assert len(secret) > len(opened)  # the values and their passwords at least
    # GitHub sees each secret only as a sealed `encrypted_value`.
    sent = "\n".join(f"{r.path} {r.request_body}" for r in github.sandbox.requests)
    assert "encrypted_value" in sent
    # The operator's view of the same ledger: `runkeys audit`, as a table and as JSON lines.
    monkeypatch.setenv("RUNKEYS_DATABASE_URL", environ["RUNKEYS_DATABASE_URL"])
    audit = {}
    for where, argv in {"audit": ["audit"], "audit --json": ["audit", "--json"]}.items():
        code, audit[where], _ = run_cli(capsys, *argv)
        assert code == 0, where
        # Control: the output is this request's decision (an empty one would scan clean).
        assert github.repo.full_name in audit[where], where
        assert all(name in audit[where] for name in opened), where
    scanned = {"answer": answer, "logs": logs, "github": sent, **audit}
    for where, text in scanned.items():
        assert leaks(text, values) == [], where
    for where, text in {"ledger": rows, "file": ledger_file}.items():
        assert leaks(text, secret) == [], where
    # Positive control: the scan finds a value in any of its forms.
    value = opened[keys["token"]].value
    assert leaks(f"x {base64.b64encode(value.encode()).decode()} y", [value])
    assert leaks(str({"v": value}), [value])


def test_every_decision_is_audited_in_the_ledger_a_log_line_and_a_counter(  # noqa: PLR0917
    client: FlaskClient,
    github: GitHub,
    broker: Flask,
    environ: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="runkeys.service.audit")
    private, public = new_key_pair()
    keys = names()
    owner = github.repo.account.login
    sibling = github.sandbox.add_repository(f"{owner}/app-tools")
    github.sandbox.update_installation(github.installation, repositories=[github.repo, sibling])
    allowed = post(client, request_body(spec(keys), public), github.auth(github.claims()))
    assert allowed.status_code == 201
    denied_claims = github.claims(repo=sibling, actor="mallory")
    denied = post(client, request_body(spec(names()), public), github.auth(denied_claims))
    assert denied.status_code == 403
    # One JSON line per decision, on the audit logger, the record's fields in it.
    lines = [
        json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name.endswith(".audit")
    ]
    assert {x["message"] for x in lines} == {"policy decision"}
    assert [(x["outcome"], x["repository"]) for x in lines] == [
        ("allow", github.repo.full_name),
        ("deny", sibling.full_name),
    ]
    assert lines[1]["actor"] == "mallory"
    assert lines[1]["rules"] == ["no rule matched"]
    assert sorted(k["name"] for k in lines[0]["keys"]) == sorted(keys.values())
    # The counter, by outcome and rule.
    registry = broker.extensions["runkeys"].metrics.registry
    sample = "runkeys_policy_decisions_total"
    assert registry.get_sample_value(sample, {"outcome": "allow", "rule": "app-ci"}) == 1
    assert registry.get_sample_value(sample, {"outcome": "deny", "rule": "no rule matched"}) == 1
    # `runkeys audit` reads them from the ledger.
    monkeypatch.setenv("RUNKEYS_DATABASE_URL", environ["RUNKEYS_DATABASE_URL"])
    code, out, _ = run_cli(capsys, "audit", "--json")
    assert code == 0
    found = [json.loads(line) for line in out.splitlines()]
    assert [(d["outcome"], d["repository"]) for d in found] == [
        ("deny", sibling.full_name),
        ("allow", github.repo.full_name),
    ]
    assert found[0]["run_id"] == denied_claims.run_id
    code, out, _ = run_cli(capsys, "audit", "--json", "--denied")
    assert [json.loads(line)["repository"] for line in out.splitlines()] == [sibling.full_name]
    code, out, _ = run_cli(capsys, "audit", "--json", "--repository", github.repo.full_name.upper())
    assert [json.loads(line)["outcome"] for line in out.splitlines()] == ["allow"]
    code, table, _ = run_cli(capsys, "audit")
    assert "DENY  no rule matched" in table
    assert "actor mallory" in table
    opened = unsealed(private, allowed)
    values = [v for k in opened.values() for v in (k.value, k.parts.get("PASSWORD", k.value))]
    logged = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert leaks(table + out + logged, values) == []


def test_the_services_app_writes_with_a_token_narrowed_to_the_repository_and_the_write(
    client: FlaskClient, github: GitHub
) -> None:
    github.sandbox.clear_requests()
    _, public = new_key_pair()
    data = request_body(
        spec(names()), public, destination={"kind": "environment", "environment": "ci-run-{run_id}"}
    )
    assert post(client, data, github.auth(github.claims())).status_code == 201
    asked = [
        r.json()
        for r in github.sandbox.requests
        if r.method == "POST" and r.path.endswith("/access_tokens")
    ]
    # Environment secrets: GitHub's table asks for these, and the environment's creation for
    # Administration (https://docs.github.com/rest/authentication/permissions-required-for-github-apps).
    assert {
        "repositories": ["app"],
        "permissions": {
            "secrets": "write",
            "environments": "write",
            "actions": "read",
            "administration": "write",
        },
    } in asked
    writes = [r for r in github.sandbox.requests if r.method == "PUT" and "/secrets/" in r.path]
    assert len(writes) == 3
    assert {r.caller for r in writes} == {"installation"}


def github_calls(github: GitHub) -> list[str]:
    """The GitHub API calls the stand-in answered (not the OIDC issuer's keys), by operation."""
    return [
        r.operation or f"{r.method} {r.path}"
        for r in github.sandbox.requests
        if not r.path.startswith("/_services/")
    ]


def test_a_new_environment_costs_the_fewest_github_calls_as_in_local_mode(
    client: FlaskClient, github: GitHub
) -> None:
    """A fresh service's first request makes local mode's minimum for N keys into a new
    environment, N + 5 calls (the installation is looked up once, not again by the session
    narrowed to the write); a later request reuses both, N + 3."""
    environment = [
        "GET /repos/{owner}/{repo}/environments/{environment_name}",
        "PUT /repos/{owner}/{repo}/environments/{environment_name}",
        "GET /repos/{owner}/{repo}/environments/{environment_name}/secrets/public-key",
        *["PUT /repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"] * 3,
    ]
    keys = "".join(f"TOKEN_{i}: {{provider: random, ttl: 30m}}\n" for i in range(3))
    for pr, expected in (
        (
            31,
            [
                "GET /repos/{owner}/{repo}/installation",
                "POST /app/installations/{installation_id}/access_tokens",
                *environment,
            ],
        ),
        (32, environment),
    ):
        github.sandbox.clear_requests()
        _, public = new_key_pair()
        data = request_body(
            keys, public, destination={"kind": "environment", "environment": "ci-pr-{pr}"}
        )
        response = post(client, data, github.auth(pr_claims(github, pr)))
        assert response.status_code == 201, response.json
        assert github_calls(github) == expected
        assert len(github.sandbox.secret_names(github.repo, f"ci-pr-{pr}")) == 3


def test_a_secret_write_failing_rolls_back_every_key_and_the_environment(
    client: FlaskClient, github: GitHub, broker: Flask
) -> None:
    _, public = new_key_pair()
    keys = names()
    # The second secret cannot be written (GitHub's 422, which is not retried).
    github.sandbox.inject_fault("PUT", rf"/secrets/{keys['cache']}$", status=422, times=None)
    claims = github.claims()
    data = request_body(
        spec(keys), public, destination={"kind": "environment", "environment": "ci-run-{run_id}"}
    )
    response = post(client, data, github.auth(claims))
    assert response.status_code == 502, js(response)
    assert js(response)["message"].startswith(f"{keys['cache']}: writing its secret failed")
    assert js(response)["key"] == keys["cache"]  # the action's annotation names it
    assert minted_accounts(keys) == NOTHING
    assert github.sandbox.environment_names(github.repo) == []  # created, then deleted
    with broker.extensions["runkeys"].ledger.begin() as conn:
        leases = list(conn.execute(select(tables.leases)))
        assert list(conn.execute(select(tables.broker_requests))) == []
    # Registered before the first write, then retired by the rollback itself, without error.
    assert sorted((r.key_name, r.state, r.last_error) for r in leases) == sorted(
        (name, "revoked", None) for name in keys.values()
    )
    # The request id is free again: the retry mints (GitHub answers now).
    github.sandbox.clear_faults()
    again = post(client, data, github.auth(github.claims(claims.run_id)))
    assert again.status_code == 201, js(again)


def test_keys_granted_earlier_in_the_run_count_toward_max_keys(
    client: FlaskClient, github: GitHub
) -> None:
    _, public = new_key_pair()
    claims = github.claims()
    assert post(client, request_body(spec(names()), public), github.auth(claims)).status_code == 201
    tag = uuid.uuid4().hex[:8]
    one_more = f"TK{tag}: {{provider: random, ttl: 5m}}\nTL{tag}: {{provider: random, ttl: 5m}}\n"
    again = post(client, request_body(one_more, public), github.auth(github.claims(claims.run_id)))
    assert again.status_code == 403
    assert "max_keys: 5 keys in this run" in js(again)["message"]
    # The next attempt of the run starts afresh.
    retry = github.claims(claims.run_id, run_attempt=2)
    assert post(client, request_body(one_more, public), github.auth(retry)).status_code == 201


def test_a_request_still_being_served_is_not_served_twice(
    client: FlaskClient, github: GitHub, broker: Flask
) -> None:
    """Two replicas receive the same request at once: the ledger's key lets one mint."""
    _, public = new_key_pair()
    keys = names()
    data = request_body(spec(keys), public)
    service = broker.extensions["runkeys"]
    with service.ledger.begin() as conn:  # the other replica's claim, mid-mint
        mine = identity(github.repo.full_name, github.repo.id, run_id=github.claims().run_id)
        assert claim_request(conn, mine, data["request_id"], now=service.clock()) is None
    response = post(client, data, github.auth(github.claims()))
    assert response.status_code == 409
    assert (js(response)["state"], js(response)["lease_ids"]) == ("minting", [])
    assert minted_accounts(keys) == NOTHING


def test_the_environments_placeholders_come_from_the_token(
    client: FlaskClient, github: GitHub
) -> None:
    private, public = new_key_pair()
    keys = names()
    claims = github.claims(run_attempt=2, run_number=42)
    data = request_body(
        f"{keys['token']}: {{provider: random, ttl: 5m}}\n",
        public,
        destination={
            "kind": "environment",
            "environment": "ci-run-{run_id}-{run_attempt}-{run_number}",
        },
    )
    response = post(client, data, github.auth(claims))
    assert response.status_code == 201, js(response)
    name = f"ci-run-{claims.run_id}-2-42"
    assert js(response)["created_environment"] == name
    assert [k["environment"] for k in js(response)["keys"]] == [name]
    value = unsealed(private, response)[keys["token"]].value
    assert github.sandbox.secret_value(github.repo, keys["token"], name) == value


@pytest.mark.parametrize(
    ("environment", "says"),
    [
        ("ci-run-{repository}", "unknown placeholder {repository}"),
        # No conversion or format: `!r` would quote the number, `:>200` pad it out.
        ("ci-run-{run_id!r}", "no conversion or format"),
        ("ci-run-{run_id:x>20}", "no conversion or format"),
        ("ci-run-{pr[0]}", "unknown placeholder {pr[0]}"),
        ("ci-run-{run_id", "write `{{` for a brace"),
        ("ci-run-{run_id}/..", "ci-run-"),  # a dot segment, refused by GitHub's naming rules
    ],
)
def test_a_destination_the_token_cannot_fill_is_refused(
    client: FlaskClient, github: GitHub, environment: str, says: str
) -> None:
    _, public = new_key_pair()
    keys = names()
    data = request_body(
        spec(keys), public, destination={"kind": "environment", "environment": environment}
    )
    response = post(client, data, github.auth(github.claims()))
    assert response.status_code == 422, js(response)
    assert js(response)["error"] == "invalid_destination"
    assert says in js(response)["message"]
    assert minted_accounts(keys) == NOTHING


# --- `POST /v1/keys/retire`: the post step asks the service to retire ---------------------


def retire(client: FlaskClient, data: Any, headers: dict[str, str]) -> TestResponse:
    response = client.post("/v1/keys/retire", json=data, headers=headers)
    assert_documented("POST", "/v1/keys/retire", response.status_code, response.json)
    return response


def lease_states(broker: Flask) -> dict[str, str]:
    with broker.extensions["runkeys"].ledger.begin() as conn:
        return {r.key_name: r.state for r in conn.execute(select(tables.leases))}


def granted_with_lifetimes(
    client: FlaskClient, github: GitHub, claims: Any
) -> tuple[dict[str, str], str]:
    """A request whose PostgreSQL and random keys live for the job, its Redis key for the run,
    all written into `ci-run-{run_id}`: its key names and request id."""
    _, public = new_key_pair()
    keys = names()
    text = (
        spec(keys)
        .replace("ci_db, ttl: 30m", "ci_db, ttl: 30m, lifetime: job")
        .replace("random, ttl: 30m", "random, ttl: 30m, lifetime: job")
    )
    data = request_body(
        text, public, destination={"kind": "environment", "environment": "ci-run-{run_id}"}
    )
    response = post(client, data, github.auth(claims))
    assert response.status_code == 201, js(response)
    return keys, data["request_id"]


def test_the_post_step_retires_its_job_keys_then_all_of_them(
    client: FlaskClient, github: GitHub, broker: Flask
) -> None:
    claims = github.claims()
    keys, request_id = granted_with_lifetimes(client, github, claims)
    environment = f"ci-run-{claims.run_id}"
    same_run = github.claims(claims.run_id)  # the post step: the same run attempt, a new token
    job = retire(client, {"request_id": request_id, "scope": "job"}, github.auth(same_run))
    assert job.status_code == 200, js(job)
    assert sorted(x["state"] for x in js(job)["leases"]) == ["revoking", "revoking"]
    assert lease_states(broker) == {
        keys["pg"]: "revoking",
        keys["token"]: "revoking",
        keys["cache"]: "active",
    }
    assert RevocationWorker(broker.extensions["runkeys"]).drain() == 2
    # The job's keys are gone from PostgreSQL and from the environment; the run's key stays.
    left = minted_accounts(keys)
    assert (left["postgres"], left["mysql"], len(left["redis"])) == ([], [], 1)
    assert github.sandbox.secret_names(github.repo, environment) == [keys["cache"].upper()]
    # `all` after a failed step: the rest too (and the job keys again, already revoked).
    again = github.claims(claims.run_id)
    every = retire(client, {"request_id": request_id, "scope": "all"}, github.auth(again))
    assert every.status_code == 200, js(every)
    assert sorted(x["state"] for x in js(every)["leases"]) == ["revoked", "revoked", "revoking"]
    assert RevocationWorker(broker.extensions["runkeys"]).drain() == 1
    assert minted_accounts(keys) == NOTHING
    assert environment not in github.sandbox.environment_names(github.repo)


@pytest.mark.parametrize(
    "who",
    ["sibling repository", "another run", "another attempt", "unknown request", "replayed token"],
)
def test_only_the_run_attempt_that_asked_may_retire_its_keys(
    client: FlaskClient, github: GitHub, broker: Flask, who: str
) -> None:
    claims = github.claims()
    keys, request_id = granted_with_lifetimes(client, github, claims)
    body = {"request_id": request_id, "scope": "all"}
    if who == "sibling repository":  # same owner, same run id and attempt, App installed on both
        sibling = github.sandbox.add_repository(f"{github.repo.account.login}/app-tools")
        github.sandbox.update_installation(github.installation, repositories=[github.repo, sibling])
        headers = github.auth(github.claims(claims.run_id, repo=sibling))
    elif who == "another run":
        headers = github.auth(github.claims())
    elif who == "another attempt":
        headers = github.auth(github.claims(claims.run_id, run_attempt=claims.run_attempt + 1))
    elif who == "unknown request":
        body["request_id"] = uuid.uuid4().hex
        headers = github.auth(github.claims(claims.run_id))
    else:  # the post step's own token, taken once already
        headers = github.auth(github.claims(claims.run_id))
        assert retire(client, {**body, "scope": "job"}, headers).status_code == 200
        RevocationWorker(broker.extensions["runkeys"]).drain()
        # Only the job keys went, by the first use; the replay must not take the rest.
        assert lease_states(broker)[keys["cache"]] == "active"
    before = lease_states(broker)
    response = retire(client, body, headers)
    if who == "replayed token":
        assert response.status_code == 401
    else:
        assert response.status_code == 404, js(response)
        assert js(response)["error"] == "request_not_found"
        assert "sealed" not in response.data.decode()
    assert RevocationWorker(broker.extensions["runkeys"]).drain() == 0
    assert lease_states(broker) == before
    assert len(minted_accounts(keys)["redis"]) == 1
    if who != "replayed token":
        assert len(minted_accounts(keys)["postgres"]) == 1
        assert sorted(
            github.sandbox.secret_names(github.repo, f"ci-run-{claims.run_id}")
        ) == sorted(k.upper() for k in keys.values())


def test_a_request_still_being_served_is_not_retired(
    client: FlaskClient, github: GitHub, broker: Flask
) -> None:
    claims = github.claims()
    request_id = uuid.uuid4().hex
    service = broker.extensions["runkeys"]
    with service.ledger.begin() as conn:
        mine = identity(github.repo.full_name, github.repo.id, run_id=claims.run_id)
        assert claim_request(conn, mine, request_id, now=service.clock()) is None
    response = retire(client, {"request_id": request_id, "scope": "all"}, github.auth(claims))
    assert response.status_code == 409, js(response)
    assert js(response)["error"] == "request_in_progress"


def test_a_sibling_repositorys_request_ids_are_its_own(
    client: FlaskClient, github: GitHub, broker: Flask, clock: Clock
) -> None:
    """`owner/app2`, in the same installation and the same run id, holds request ids that
    `owner/app` then sends: each repository's rows are its own to claim, grant, count and
    release. The expected rows are written here, not read from the code."""
    service = broker.extensions["runkeys"]
    sibling = github.sandbox.add_repository(f"{github.repo.account.login}/app2")
    github.sandbox.update_installation(github.installation, repositories=[github.repo, sibling])
    _, public = new_key_pair()
    claims = github.claims()
    theirs = identity(sibling.full_name, sibling.id, run_id=claims.run_id)
    held, spent, later = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    theirs_leases = [f"lease-{i}" for i in range(4)]  # max_keys (4) for their run attempt
    started = clock()
    with service.ledger.begin() as conn:
        assert claim_request(conn, theirs, held, now=started) is None  # theirs, mid-mint
        assert claim_request(conn, theirs, spent, now=started) is None
    granted_at = clock.advance(minutes=1)
    with service.ledger.begin() as conn:
        assert grant_request(conn, theirs, spent, theirs_leases, claimed_at=started, now=granted_at)

    def one_key() -> str:
        return f"TK{uuid.uuid4().hex[:8]}: {{provider: random, ttl: 5m}}\n"

    # Their 4 keys do not count toward this repository's max_keys in the same run id.
    mine = post(client, request_body(one_key(), public, request_id=held), github.auth(claims))
    assert mine.status_code == 201, mine.json
    mine_leases = [k["lease_id"] for k in js(mine)["keys"]]
    again = post(client, request_body(one_key(), public, request_id=held), github.auth(claims))
    assert again.status_code == 409, again.json
    assert (js(again)["state"], js(again)["lease_ids"]) == ("granted", mine_leases)
    next_one = post(client, request_body(one_key(), public, request_id=later), github.auth(claims))
    assert next_one.status_code == 201, next_one.json
    later_leases = [k["lease_id"] for k in js(next_one)["keys"]]
    # Refused with their granted request's id: only this repository's attempt is released.
    refused = post(
        client,
        request_body(
            one_key(),
            public,
            request_id=spent,
            destination={"kind": "environment", "environment": "prod"},
        ),
        github.auth(claims),
    )
    assert refused.status_code == 403, refused.json
    with service.ledger.begin() as conn:
        rows = {
            (r.repository_id, r.request_id): (r.state, list(r.lease_ids), r.updated_at)
            for r in conn.execute(select(tables.broker_requests))
        }
    assert rows == {
        (sibling.id, held): ("minting", [], started),
        (sibling.id, spent): ("granted", theirs_leases, granted_at),
        (github.repo.id, held): ("granted", mine_leases, granted_at),
        (github.repo.id, later): ("granted", later_leases, granted_at),
    }
    # The refused id is free again for this repository, and still taken for theirs.
    retried = post(client, request_body(one_key(), public, request_id=spent), github.auth(claims))
    assert retried.status_code == 201, retried.json
    # Minted on the service's clock (a minute ahead of real time here) for the installation
    # the token's repository is in; `job` keys are written nowhere on GitHub.
    expires = {datetime.fromisoformat(k["expires_at"]) for k in js(retried)["keys"]}
    assert expires
    assert all(abs(e - (granted_at + timedelta(minutes=5))) < timedelta(seconds=1) for e in expires)
    with service.ledger.begin() as conn:
        installations = {r.installation_id for r in conn.execute(select(tables.leases))}
    assert installations == {github.installation.id}
    assert github.sandbox.secret_names(github.repo) == []
    assert github.sandbox.environment_names(github.repo) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "The body is not JSON"),
        ("job-with-environment", "destination.environment"),
        ("environment-without-one", "destination.environment"),
        ("short-public-key", "public_key"),
        ("low-order-public-key", "public_key is not an X25519 public key"),
    ],
)
def test_a_malformed_body_is_a_400_naming_its_field(
    client: FlaskClient, github: GitHub, body: Any, field: str
) -> None:
    _, public = new_key_pair()
    keys = names()
    data = request_body(spec(keys), public)
    if body == "job-with-environment":
        data["destination"] = {"kind": "job", "environment": "ci-run-1"}
    elif body == "environment-without-one":
        data["destination"] = {"kind": "environment"}
    elif body == "short-public-key":  # 31 bytes: one short of an X25519 key
        data["public_key"] = base64.b64encode(base64.b64decode(public)[:-1]).decode()
    elif body == "low-order-public-key":  # 32 bytes, the schema's shape, but no usable key
        data["public_key"] = base64.b64encode(bytes(32)).decode()
    raw = body if isinstance(body, bytes) else json.dumps(data).encode()
    response = client.post(
        "/v1/keys",
        data=raw,
        headers=github.auth(github.claims()) | {"Content-Type": "application/json"},
    )
    assert_documented("POST", "/v1/keys", response.status_code, response.json)
    assert (response.status_code, js(response)["error"]) == (400, "invalid_request")
    assert field in js(response)["message"]
    assert minted_accounts(keys) == NOTHING


@pytest.mark.parametrize(
    ("extra", "key", "field"),
    [
        # A connection the service does not have: `ci_db` wrong in its last character.
        ("BAD: {provider: postgres, connection: ci_dc, ttl: 5m}\n", "BAD", "CI_DC"),
        ("BAD: {provider: random, ttl: 5m, lifetime: pr}\n", "BAD", "pull request"),
        ("BAD: {provider: random, ttl: 25h}\n", "BAD", "ttl"),  # the service's max_ttl: 24h
        (
            "BAD: {provider: random, ttl: 25h}\nWORSE: {provider: random, ttl: 25h}\n",
            None,
            "ttl",
        ),
    ],
)
def test_a_spec_outside_the_services_rules_is_a_422_naming_its_key(  # noqa: PLR0917
    client: FlaskClient, github: GitHub, broker: Flask, extra: str, key: str | None, field: str
) -> None:
    _, public = new_key_pair()
    response = post(client, request_body(extra, public), github.auth(github.claims()))
    assert (response.status_code, js(response)["error"]) == (422, "invalid_spec"), response.json
    assert js(response).get("key") == key
    assert field in js(response)["message"]
    with broker.extensions["runkeys"].ledger.begin() as conn:
        assert list(conn.execute(select(tables.broker_requests))) == []


@pytest.fixture
def one_hour_broker(
    environ: dict[str, str], github: GitHub, tmp_path: Path, clock: Clock
) -> Iterator[Flask]:
    """The broker with RUNKEYS_MAX_TTL=1h, below the spec rules' own default (24h)."""
    owner = github.repo.account.login
    with_max = environ | {"RUNKEYS_MAX_TTL": "1h"}
    yield from app_with_policy(policy(owner), with_max, tmp_path, clock)


def test_the_services_max_ttl_bounds_the_spec_before_the_policy_is_asked(
    one_hour_broker: Flask, github: GitHub
) -> None:
    """RUNKEYS_MAX_TTL=1h: a 2h key is the service's own 422 naming it, before any claim or
    decision (the policy's 1h would have denied it with a 403); a 59-minute key is granted."""
    client = one_hour_broker.test_client()
    _, public = new_key_pair()
    tag = uuid.uuid4().hex[:8]
    long_key = f"LONG{tag}: {{provider: random, ttl: 2h}}\n"
    response = post(client, request_body(long_key, public), github.auth(github.claims()))
    assert (response.status_code, js(response)["error"]) == (422, "invalid_spec"), response.json
    assert js(response)["key"] == f"LONG{tag}"
    assert "longer than the limit of 1h" in js(response)["message"]
    with one_hour_broker.extensions["runkeys"].ledger.begin() as conn:
        assert list(conn.execute(select(tables.broker_requests))) == []
        assert list(conn.execute(select(tables.policy_decisions))) == []
    within = f"SHORT{tag}: {{provider: random, ttl: 59m}}\n"
    granted = post(client, request_body(within, public), github.auth(github.claims()))
    assert granted.status_code == 201, granted.json
    assert [k["name"] for k in js(granted)["keys"]] == [f"SHORT{tag}"]


def test_a_grant_its_repetition_and_its_retirement_are_each_one_log_line(
    client: FlaskClient, github: GitHub, caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    """What an operator follows a request by: its run attempt, request id and lease ids; the
    policy's decision on the audit logger, at the service's time."""
    caplog.set_level(logging.INFO, logger="runkeys.service.broker")
    caplog.set_level(logging.INFO, logger="runkeys.service.audit")
    decided_at = clock.advance(minutes=3)
    _, public = new_key_pair()
    claims = github.claims()
    name = f"TK{uuid.uuid4().hex[:8]}"
    data = request_body(
        f"{name}: {{provider: random, ttl: 5m, lifetime: job}}\n",
        public,
        destination={"kind": "environment", "environment": "ci-run-{run_id}"},
    )
    granted = post(client, data, github.auth(claims))
    assert granted.status_code == 201, granted.json
    assert post(client, data, github.auth(claims)).status_code == 409
    asked = {"request_id": data["request_id"], "scope": "job"}
    assert retire(client, asked, github.auth(claims)).status_code == 200
    [lease_id] = [k["lease_id"] for k in js(granted)["keys"]]
    request = {
        "repository": github.repo.full_name,
        "run_id": claims.run_id,
        "run_attempt": claims.run_attempt,
        "request_id": data["request_id"],
    }
    lines = [
        json.loads(JsonFormatter().format(r))
        for r in caplog.records
        if r.name == "runkeys.service.broker" and r.getMessage().startswith("keys ")
    ]
    wanted: list[tuple[str, str, dict[str, Any]]] = [
        ("keys granted", "info", {"leases": [lease_id]}),
        ("keys request repeated", "warning", {"state": "granted", "leases": [lease_id]}),
        ("keys retirement asked", "info", {"scope": "job", "queued": [lease_id]}),
    ]
    assert [(x["message"], x["level"]) for x in lines] == [(m, lv) for m, lv, _ in wanted]
    for line, (_, _, fields) in zip(lines, wanted, strict=True):
        assert {k: line.get(k) for k in [*request, *fields]} == request | fields
    assert lines[0]["created_environment"] == f"ci-run-{claims.run_id}"
    [audited] = [r for r in caplog.records if r.name == "runkeys.service.audit"]
    assert json.loads(JsonFormatter().format(audited))["at"] == decided_at.isoformat()


def test_every_denied_key_is_counted_in_the_refusal(client: FlaskClient, github: GitHub) -> None:
    _, public = new_key_pair()
    keys = names()
    two = (
        spec(keys)
        .replace("ci_db, ttl: 30m", "ci_db, ttl: 2h")
        .replace("random, ttl: 30m", "random, ttl: 2h")
    )
    response = post(client, request_body(two, public), github.auth(github.claims()))
    assert response.status_code == 403, response.json
    assert js(response)["message"].endswith("Nothing was minted (1 more key(s) denied too)")
    assert [x.split(":")[0] for x in js(response)["denied"]] == [keys["pg"], keys["token"]]
    assert minted_accounts(keys) == NOTHING


# PostgreSQL commits durably anyway: the test is for SQLite's per-transaction level only.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_registration_and_retirement_commit_durably_on_sqlite(
    database_url: str, client: FlaskClient, github: GitHub, broker: Flask
) -> None:
    """The leases' registration and the retirement's queueing commit with SQLite's
    `synchronous=FULL` (2); the request's claim, which a lost commit only frees again, does
    not. The level is read on the driver's connection as each statement runs."""
    ledger = broker.extensions["runkeys"].ledger
    assert ledger.dialect == "sqlite"
    levels: list[tuple[str, int]] = []

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith(("INSERT", "UPDATE")):
            level = conn.connection.driver_connection.execute("PRAGMA synchronous").fetchone()
            levels.append((" ".join(statement.split()[:3]), level[0]))

    event.listen(ledger.engine, "before_cursor_execute", seen)
    try:
        _, public = new_key_pair()
        claims = github.claims()
        name = f"TK{uuid.uuid4().hex[:8]}"
        data = request_body(f"{name}: {{provider: random, ttl: 5m, lifetime: job}}\n", public)
        assert post(client, data, github.auth(claims)).status_code == 201
        granted = list(levels)
        levels.clear()
        asked = {"request_id": data["request_id"], "scope": "job"}
        assert retire(client, asked, github.auth(claims)).status_code == 200
    finally:
        event.remove(ledger.engine, "before_cursor_execute", seen)
    assert ("INSERT INTO broker_requests", 1) in granted
    assert ("INSERT INTO leases", 2) in granted
    assert ("UPDATE broker_requests SET", 2) in granted
    assert ("UPDATE leases SET", 2) in levels, levels  # queued for the worker


def test_grant_itself_refuses_without_a_policy(
    environ: dict[str, str], github: GitHub, clock: Clock
) -> None:
    """The view refuses first (before the body is read); `grant` refuses on its own too, for any
    other caller: nothing is claimed or minted without a policy to check it against."""
    made = create_app(environ | connections(), clock=clock)
    service = made.extensions["runkeys"]
    try:
        _, public = new_key_pair()
        data = request_body(f"TK{uuid.uuid4().hex[:8]}: {{provider: random, ttl: 5m}}\n", public)
        mine = identity(github.repo.full_name, github.repo.id)
        with pytest.raises(ApiError) as raised:
            grant(service, mine, github.installation.id, json.dumps(data).encode())
        with service.ledger.begin() as conn:
            assert list(conn.execute(select(tables.broker_requests))) == []
    finally:
        service.close()
    assert (raised.value.status, raised.value.code) == (404, "broker_off")
    assert "RUNKEYS_POLICY_FILE" in raised.value.message
