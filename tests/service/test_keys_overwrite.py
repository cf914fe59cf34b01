"""`POST /v1/keys` never replaces a secret runkeys did not write: a hostile workflow names a key
like the platform team's own secret (repository or environment) and gets one 409, with nothing
minted and the team's secret untouched; a secret a live lease wrote is rotated as before."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from handler.ledger import tables
from runkeys.broker import KeysGranted, new_key_pair
from runkeys.leases import SecretTarget
from tests.service.attack_kit import run_worker
from tests.service.conftest import GitHub
from tests.service.kit import Clock, js
from tests.service.test_keys_api import (
    MISSING_ROLE,
    NOTHING,
    app_with_policy,
    minted_accounts,
    names,
    post,
    request_body,
    unsealed,
)

HAND_MADE = "the platform team's deploy token"


def policy(owner: str) -> str:
    """Repository secrets and `ci-pr-*` environments allowed: the keys' names are the attack."""
    return f"""\
version: 1
rules:
  - name: app-main
    match:
      repository: {owner}/app
    max_keys: 4
    destinations:
      job: true
      repository_secrets: true
      environments: ["ci-pr-*"]
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
      - provider: random
        max_ttl: 1h
        lifetimes: [job, run, pr, ttl]
"""


@pytest.fixture
def broker(
    environ: dict[str, str], github: GitHub, tmp_path: Path, clock: Clock
) -> Iterator[Flask]:
    yield from app_with_policy(policy(github.repo.account.login), environ, tmp_path, clock)


def spec(keys: dict[str, str], token: str, lifetime: str = "job") -> str:
    # The hostile key comes last: the check must refuse before the first key is minted.
    return (
        f"{keys['pg']}: {{provider: postgres, connection: ci_db, ttl: 30m}}\n"
        f"{keys['cache']}: {{provider: redis, connection: ci_cache, ttl: 30m,"
        " categories: ['@read'], keys: ['app:*']}\n"
        f"{token}: {{provider: random, ttl: 30m, lifetime: {lifetime}}}\n"
    )


def lease_count(broker: Flask) -> int:
    with broker.extensions["runkeys"].ledger.begin() as conn:
        return len(list(conn.execute(select(tables.leases.c.id))))


@pytest.mark.parametrize("environment", [None, "ci-pr-7"], ids=["repository", "environment"])
def test_a_key_named_like_a_hand_made_secret_is_refused_and_leaves_it_alone(
    broker: Flask, github: GitHub, environment: str | None
) -> None:
    client: FlaskClient = broker.test_client()
    store = broker.extensions["runkeys"].secrets_for(github.repo.full_name)
    if environment is not None:
        store.create_environment(environment)
    # Almost right: the spec spells it in lower case; GitHub's names ignore case.
    token = f"Deploy_{uuid.uuid4().hex[:8]}"
    store.put(SecretTarget(github.repo.full_name, token.upper(), environment), HAND_MADE)
    keys = names()
    destination = (
        {"kind": "repository"}
        if environment is None
        else {"kind": "environment", "environment": environment}
    )
    before = lease_count(broker)
    seen = len(github.sandbox.requests)
    _, public = new_key_pair()
    data = request_body(spec(keys, token), public, destination=destination)
    response = post(client, data, github.auth(github.claims()))

    assert response.status_code == 409, response.json
    body = js(response)
    assert body["error"] == "secret_exists"
    assert body["key"] == token
    assert token in body["message"]
    assert HAND_MADE not in body["message"]
    assert minted_accounts(keys) == NOTHING
    assert lease_count(broker) == before
    assert github.sandbox.secret_names(github.repo, environment) == [token.upper()]
    assert github.sandbox.secret_value(github.repo, token, environment) == HAND_MADE
    writes = [r for r in github.sandbox.requests[seen:] if r.method in {"PUT", "DELETE"}]
    assert writes == []
    # The refusal freed the request id: the same request with another key name goes through.
    renamed = request_body(spec(keys, token + "X"), public, destination=destination)
    renamed["request_id"] = data["request_id"]
    again = post(client, renamed, github.auth(github.claims()))
    assert again.status_code == 201, again.json
    assert github.sandbox.secret_value(github.repo, token, environment) == HAND_MADE


def test_a_repository_secret_a_live_lease_wrote_is_rotated(broker: Flask, github: GitHub) -> None:
    client: FlaskClient = broker.test_client()
    keys = names()
    token = f"ROT{uuid.uuid4().hex[:8]}"
    values = []
    for _ in range(2):
        private, public = new_key_pair()
        data = request_body(spec(keys, token, "ttl"), public, destination={"kind": "repository"})
        response = post(client, data, github.auth(github.claims()))
        assert response.status_code == 201, response.json
        values.append(unsealed(private, response)[token].value)
        assert github.sandbox.secret_value(github.repo, token) == values[-1]
    assert values[0] != values[1]


def _random_only(token: str, lifetime: str = "ttl") -> str:
    return f"{token}: {{provider: random, ttl: 30m, lifetime: {lifetime}}}\n"


def _lease_ids(response: TestResponse) -> list[str]:
    granted = msgspec.json.decode(response.data, type=KeysGranted)
    return [key.lease_id for key in granted.keys]


def test_a_live_lease_of_the_repository_does_not_vouch_for_an_environment_secret_of_that_name(
    broker: Flask, github: GitHub
) -> None:
    """Almost right: runkeys wrote repository secret T (a live lease); the team made T by hand
    in environment ci-pr-7. That lease says nothing about the environment's T."""
    client: FlaskClient = broker.test_client()
    token = f"ENV{uuid.uuid4().hex[:8]}"
    _, public = new_key_pair()
    data = request_body(_random_only(token), public, destination={"kind": "repository"})
    assert post(client, data, github.auth(github.claims())).status_code == 201
    store = broker.extensions["runkeys"].secrets_for(github.repo.full_name)
    store.create_environment("ci-pr-7")
    store.put(SecretTarget(github.repo.full_name, token, "ci-pr-7"), HAND_MADE)

    destination = {"kind": "environment", "environment": "ci-pr-7"}
    data = request_body(_random_only(token), public, destination=destination)
    response = post(client, data, github.auth(github.claims()))
    assert response.status_code == 409, response.json
    assert js(response)["key"] == token
    assert github.sandbox.secret_value(github.repo, token, "ci-pr-7") == HAND_MADE


def test_a_secret_remade_by_hand_after_its_lease_was_retired_is_not_runkeys_any_more(
    broker: Flask, github: GitHub
) -> None:
    """runkeys wrote T, retired it (and deleted T); the team then made T by hand: the retired
    lease vouches for nothing."""
    client: FlaskClient = broker.test_client()
    token = f"OLD{uuid.uuid4().hex[:8]}"
    _, public = new_key_pair()
    data = request_body(_random_only(token), public, destination={"kind": "repository"})
    first = post(client, data, github.auth(github.claims()))
    assert first.status_code == 201, first.json
    run_worker(broker, *_lease_ids(first))
    assert token not in github.sandbox.secret_names(github.repo, None)
    store = broker.extensions["runkeys"].secrets_for(github.repo.full_name)
    store.put(SecretTarget(github.repo.full_name, token, None), HAND_MADE)

    data = request_body(_random_only(token), public, destination={"kind": "repository"})
    response = post(client, data, github.auth(github.claims()))
    assert response.status_code == 409, response.json
    assert js(response)["key"] == token
    assert github.sandbox.secret_value(github.repo, token) == HAND_MADE
