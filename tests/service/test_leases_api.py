"""`POST /v1/leases` and `POST /v1/leases/retire` through the Flask test client, on both
engines, with tokens from the sandbox's OIDC issuer and its App installation lookup."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from werkzeug.test import TestResponse

from handler.ledger import tables
from handler.ledger.history import history
from handler.ledger.leases import get
from handler.worker import RevocationWorker
from runkeys.leases import LeaseRequest, LeaseState, Lifetime, SecretTarget
from tests.service.conftest import GitHub
from tests.service.kit import HTTP_PARAMS, Clock, assert_documented, body, js, lease, stored
from tests.services import unique


def post(client: FlaskClient, path: str, data: Any, headers: dict[str, str]) -> TestResponse:
    response = client.post(path, json=data, headers=headers)
    assert_documented("POST", path, response.status_code, response.json)
    return response


def record(app: Flask, lease_id: str) -> Any:
    with app.extensions["runkeys"].ledger.begin() as conn:
        return get(conn, lease_id)


def test_register_takes_the_run_from_the_token(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    claims = github.claims(environment="staging")
    item = github.lease()
    response = post(client, "/v1/leases", body(item), github.auth(claims))
    assert response.status_code == 201
    assert response.json == {
        # RFC 3339, UTC written as Z
        "leases": [
            {
                "id": item.id,
                "state": "active",
                "expires_at": f"{item.expires_at:%Y-%m-%dT%H:%M:%S.%fZ}",
            }
        ]
    }
    stored = record(app, item.id)
    assert (stored.repository, stored.repository_id) == (github.repo.full_name, github.repo.id)
    assert (stored.run_id, stored.run_attempt) == (claims.run_id, claims.run_attempt)
    assert stored.job_environment == "staging"
    assert stored.installation_id == github.installation.id
    assert stored.owner_id == github.repo.account.id
    assert stored.pr_number is None
    assert stored.fingerprint == item.fingerprint


def test_a_ttl_lease_of_a_repository_secret_is_registered(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    item = github.lease(key_name="DEPLOY_DATABASE_URL", lifetime=Lifetime.TTL)
    response = post(client, "/v1/leases", body(item), github.auth(github.claims()))
    assert response.status_code == 201
    stored = record(app, item.id)
    assert stored.lifetime is Lifetime.TTL
    assert (stored.secret.name, stored.secret.environment) == ("DEPLOY_DATABASE_URL", None)


def test_repeating_a_registration_changes_nothing(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    claims = github.claims()
    items = [github.lease(key_name="A"), github.lease(key_name="B")]
    assert post(client, "/v1/leases", body(*items), github.auth(claims)).status_code == 201
    again = post(client, "/v1/leases", body(*items), github.auth(claims))  # a fresh token: jti
    assert again.status_code == 200
    assert [entry["id"] for entry in js(again)["leases"]] == [i.id for i in items]
    with app.extensions["runkeys"].ledger.begin() as conn:
        assert [e.action for e in history(conn, items[0].id)] == ["registered"]
    extended = post(
        client, "/v1/leases", body(*items, github.lease(key_name="C")), github.auth(claims)
    )
    assert extended.status_code == 201


def test_an_id_of_another_run_is_a_conflict(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    item = github.lease()
    assert post(client, "/v1/leases", body(item), github.auth(github.claims())).status_code == 201
    fresh = github.lease(key_name="NEW")
    response = post(client, "/v1/leases", body(fresh, item), github.auth(github.claims()))
    assert response.status_code == 409
    assert js(response)["error"] == "lease_conflict"
    assert record(app, fresh.id) is None  # nothing of the request was written
    other = github.claims(repo=github.other_repo)
    clash = lease(repository=github.other_repo.full_name, lease_id=item.id)
    assert post(client, "/v1/leases", body(clash), github.auth(other)).status_code == 409


def test_expiry_beyond_the_maximum_ttl_is_refused(client: FlaskClient, github: GitHub) -> None:
    ok, too_long = (
        github.lease(ttl=timedelta(hours=23)),
        github.lease(key_name="LONG", ttl=timedelta(hours=25)),
    )
    response = post(client, "/v1/leases", body(ok, too_long), github.auth(github.claims()))
    assert response.status_code == 422
    assert js(response)["error"] == "ttl_too_long"
    assert too_long.id in js(response)["message"]
    assert "LONG" in js(response)["message"]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"lifetime": Lifetime.PR}, "no_pull_request"),
        ({"provider": "nonesuch"}, "unknown_provider"),
        ({"params": {"format": "morse"}}, "invalid_params"),
        ({"provider": "http", "connection": "issuer", "params": HTTP_PARAMS}, "unknown_connection"),
        ({"repository": "someone/else"}, "foreign_repository"),
        ({"ttl": timedelta(seconds=-5)}, "invalid_expiry"),
    ],
    ids=["pr-without-pr", "provider", "params", "connection", "foreign-secret", "expiry"],
)
def test_a_lease_the_service_could_not_retire_is_refused(
    client: FlaskClient, github: GitHub, fields: dict[str, Any], code: str
) -> None:
    item = github.lease(**fields)
    response = post(client, "/v1/leases", body(item), github.auth(github.claims()))
    assert (response.status_code, js(response)["error"]) == (422, code)
    assert item.id in js(response)["message"]


def test_pr_lifetime_takes_the_number_from_the_ref(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    claims = github.claims(ref="refs/pull/42/merge", event_name="pull_request")
    item = github.lease(lifetime=Lifetime.PR)
    assert post(client, "/v1/leases", body(item), github.auth(claims)).status_code == 201
    assert record(app, item.id).pr_number == 42


def wire(**fields: Any) -> Any:
    return msgspec.to_builtins(lease(**fields))


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "The body is malformed: Object missing required field `leases`"),
        ([], "The body is malformed: Expected `object`, got `array`"),
        ({"leases": "A"}, "Expected `array`, got `str` - at `$.leases`"),
        ({"leases": []}, "Expected `array` of length >= 1 - at `$.leases`"),
        ({"leases": [{"id": "short"}]}, "at `$.leases[0].id`"),
        (
            {"leases": [{"id": "abcdefgh12"}]},
            "missing required field `key_name` - at `$.leases[0]`",
        ),
        (
            {"leases": [{**wire(), "key_name": 3}]},
            "Expected `str`, got `int` - at `$.leases[0].key_name`",
        ),
        ({"leases": [{**wire(), "fingerprint": "abc"}]}, "at `$.leases[0].fingerprint`"),
        ({"leases": [{**wire(), "expires_at": "2030-01-01T00:00:00"}]}, "timezone"),
        ({"leases": [{**wire(), "lifetime": "forever"}]}, "'forever' - at `$.leases[0].lifetime`"),
        (
            {"leases": [{**wire(), "secret": {"name": "A"}}]},
            "`repository` - at `$.leases[0].secret`",
        ),
        ({"leases": [{**wire(), "params": {"x": "y" * 20000}}]}, "params is larger"),
        ({"leases": [wire(lease_id="dup-dup-dup")] * 2}, "twice"),
    ],
)
def test_malformed_bodies_are_refused_by_field(
    client: FlaskClient, github: GitHub, data: Any, fragment: str
) -> None:
    response = post(client, "/v1/leases", data, github.auth(github.claims()))
    assert response.status_code == 400
    assert fragment in js(response)["message"]


def test_the_body_must_be_json(client: FlaskClient, github: GitHub) -> None:
    response = client.post("/v1/leases", data="leases", headers=github.auth(github.claims()))
    assert response.status_code == 415
    assert_documented("POST", "/v1/leases", 415, response.json)
    for path in ("/v1/leases", "/v1/leases/retire"):
        headers = {**github.auth(github.claims()), "Content-Type": "application/json"}
        response = client.post(path, data='{"leases": [', headers=headers)
        assert response.status_code == 400
        assert response.json == {"error": "invalid_request", "message": "The body is not JSON"}
        assert_documented("POST", path, 400, response.json)


def test_a_repository_without_the_app_cannot_register(client: FlaskClient, github: GitHub) -> None:
    stranger = github.sandbox.add_repository(f"{unique('stranger')}/repo")
    claims = github.claims(repo=stranger)
    item = github.lease(repository=stranger.full_name)
    response = post(client, "/v1/leases", body(item), github.auth(claims))
    assert (response.status_code, js(response)["error"]) == (403, "not_installed")


def test_no_token_no_lease(client: FlaskClient, github: GitHub) -> None:
    for headers in ({}, {"Authorization": "Basic b2N0bzpwYXNz"}, {"Authorization": "Bearer "}):
        response = post(client, "/v1/leases", body(github.lease()), headers)
        assert (response.status_code, js(response)["error"]) == (401, "missing_token")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_is_accepted_once(client: FlaskClient, github: GitHub) -> None:
    headers = github.auth(github.claims())
    assert post(client, "/v1/leases", body(github.lease()), headers).status_code == 201
    replay = post(client, "/v1/leases", body(github.lease()), headers)
    assert (replay.status_code, js(replay)["error"]) == (401, "invalid_token")
    assert "used before" in js(replay)["message"]
    assert headers["Authorization"].split()[1] not in replay.get_data(as_text=True)


@pytest.mark.parametrize(
    "overrides",
    [{"aud": "https://elsewhere.example"}, {"iss": "https://token.actions.githubusercontent.com"}],
    ids=["audience", "issuer"],
)
def test_tokens_for_someone_else_are_refused(
    client: FlaskClient, github: GitHub, overrides: dict[str, str]
) -> None:
    response = post(
        client, "/v1/leases", body(github.lease()), github.auth(github.claims(), **overrides)
    )
    assert (response.status_code, js(response)["error"]) == (401, "invalid_token")


# --- the edges of what is accepted ------------------------------------------------------------


def test_a_secret_not_named_after_its_key_is_refused(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    """A workflow leases API_TOKEN but names its deploy key's secret: the service deletes the
    secret when the lease ends, so it may only ever be the one named after the key."""
    item = msgspec.structs.replace(
        github.lease(key_name="API_TOKEN"),
        secret=SecretTarget(repository=github.repo.full_name, name="DEPLOY_KEY"),
    )
    response = post(client, "/v1/leases", body(item), github.auth(github.claims()))
    assert (response.status_code, js(response)) == (
        422,
        {
            "error": "invalid_lease",
            "message": f"lease {item.id} (API_TOKEN): its secret must be named API_TOKEN, "
            "after its key, not 'DEPLOY_KEY'",
        },
    )
    assert record(app, item.id) is None
    # A long name is quoted back cut to 100 characters (99 and an ellipsis).
    long_name = "DEPLOY_" + "K" * 193
    item = msgspec.structs.replace(
        github.lease(key_name="API_TOKEN"),
        secret=SecretTarget(repository=github.repo.full_name, name=long_name),
    )
    response = post(client, "/v1/leases", body(item), github.auth(github.claims()))
    assert js(response)["message"] == (
        f"lease {item.id} (API_TOKEN): its secret must be named API_TOKEN, after its key, "
        f"not '{long_name[:99]}…'"
    )


def test_a_provider_that_needs_a_connection_is_refused_without_one(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    """A Redis user with no connection named: the service could never reach it to revoke."""
    item = github.lease(key_name="CACHE_URL", provider="redis", params={"keys": ["ci:*"]})
    item = msgspec.structs.replace(item, reference=item.label)
    response = post(client, "/v1/leases", body(item), github.auth(github.claims()))
    assert (response.status_code, js(response)) == (
        422,
        {
            "error": "invalid_lease",
            "message": f"lease {item.id} (CACHE_URL): provider redis needs a connection",
        },
    )
    assert record(app, item.id) is None


def test_a_reference_that_is_not_the_leases_own_is_quoted_cut_to_100_characters(
    client: FlaskClient, github: GitHub
) -> None:
    """A reference of the longest length the API takes (500), naming something else: the
    refusal quotes 99 characters and an ellipsis, not 500 of the caller's choosing."""
    reference = "random:rk_" + "0" * 490
    item = github.lease(reference=reference)
    response = post(client, "/v1/leases", body(item), github.auth(github.claims()))
    assert (response.status_code, js(response)["error"]) == (422, "reference_mismatch")
    assert js(response)["message"].startswith(
        f"lease {item.id} (API_TOKEN): reference '{reference[:99]}…' is not what random mints "
    )


def at(item: LeaseRequest, issued: datetime, expires: datetime) -> LeaseRequest:
    return msgspec.structs.replace(item, issued_at=issued, expires_at=expires)


def test_an_expiry_is_after_its_issue_time(
    client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    issued = clock.now - timedelta(minutes=1)
    same = at(github.lease(), issued, issued)
    response = post(client, "/v1/leases", body(same), github.auth(github.claims()))
    assert (response.status_code, js(response)) == (
        422,
        {
            "error": "invalid_expiry",
            "message": f"lease {same.id} (API_TOKEN): expires_at is not after issued_at",
        },
    )
    a_second_later = at(github.lease(), issued, issued + timedelta(seconds=1))
    # expired by the service's clock (issued a minute ago), but no longer for the first reason
    response = post(client, "/v1/leases", body(a_second_later), github.auth(github.claims()))
    assert (response.status_code, js(response)["error"]) == (422, "invalid_expiry")
    assert "has passed" in js(response)["message"]


def test_a_lease_expiring_now_by_the_services_clock_is_refused(
    client: FlaskClient, github: GitHub, clock: Clock, app: Flask
) -> None:
    """The runner's clock may lag: a lease it thinks live but the service sees expire this
    second is refused (the action rolls it back); one second later is registered."""
    issued = clock.now - timedelta(minutes=10)
    now = at(github.lease(), issued, clock.now)
    response = post(client, "/v1/leases", body(now), github.auth(github.claims()))
    assert (response.status_code, js(response)) == (
        422,
        {
            "error": "invalid_expiry",
            "message": f"lease {now.id} (API_TOKEN): expires {clock.now.isoformat()}, "
            "which has passed by this service's clock",
        },
    )
    assert record(app, now.id) is None
    live = at(github.lease(), issued, clock.now + timedelta(seconds=1))
    assert post(client, "/v1/leases", body(live), github.auth(github.claims())).status_code == 201


def test_the_maximum_ttl_allows_a_minute_of_clock_skew(
    client: FlaskClient, github: GitHub, clock: Clock, app: Flask
) -> None:
    """RUNKEYS_MAX_TTL is 24 hours by default, from now by the service's clock, plus one
    minute for a runner's clock that runs ahead: exactly that is registered, a second more
    is refused."""
    limit = clock.now + timedelta(hours=24, minutes=1)
    longest = at(github.lease(key_name="LONGEST"), clock.now, limit)
    assert (
        post(client, "/v1/leases", body(longest), github.auth(github.claims())).status_code == 201
    )
    beyond = at(github.lease(key_name="BEYOND"), clock.now, limit + timedelta(seconds=1))
    response = post(client, "/v1/leases", body(beyond), github.auth(github.claims()))
    assert (response.status_code, js(response)) == (
        422,
        {
            "error": "ttl_too_long",
            "message": f"lease {beyond.id} (BEYOND): expires "
            f"{(limit + timedelta(seconds=1)).isoformat()}, beyond this service's maximum TTL "
            "of 1d from now",
        },
    )
    assert record(app, beyond.id) is None


def test_a_request_holds_at_most_100_leases(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    """A spec has at most 100 keys: 100 leases in one request are registered, 101 refused."""
    claims = github.claims()
    hundred = [github.lease(key_name=f"KEY_{i}") for i in range(100)]
    response = post(client, "/v1/leases", body(*hundred), github.auth(claims))
    assert response.status_code == 201
    assert len(js(response)["leases"]) == 100
    more = [*hundred, github.lease(key_name="KEY_100")]
    response = post(client, "/v1/leases", body(*more), github.auth(claims))
    assert (response.status_code, js(response)["error"]) == (400, "invalid_request")
    assert "Expected `array` of length <= 100 - at `$.leases`" in js(response)["message"]
    assert record(app, more[-1].id) is None


def test_params_of_up_to_16_kib_reach_the_providers_own_check(
    client: FlaskClient, github: GitHub
) -> None:
    """16384 bytes of params (as JSON) pass the size check and are refused by the provider
    (no such format); one byte more is refused for its size, naming the lease's place."""
    at_limit = github.lease(params={"format": "x" * (16_384 - len('{"format": ""}'))})
    response = post(client, "/v1/leases", body(at_limit), github.auth(github.claims()))
    assert (response.status_code, js(response)["error"]) == (422, "invalid_params")
    over = github.lease(params={"format": "x" * (16_385 - len('{"format": ""}'))})
    response = post(client, "/v1/leases", body(github.lease(), over), github.auth(github.claims()))
    assert (response.status_code, js(response)) == (
        400,
        {"error": "invalid_lease", "message": "leases[1].params is larger than 16384 bytes"},
    )


def test_a_lease_naming_a_part_twice_is_refused_naming_its_place(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    """Each part once (docs/service-api.openapi.yaml, `parts`): a 400 `invalid_lease` naming
    the lease's place, and neither lease of the request recorded."""
    part = {"name": "PASSWORD", "fingerprint": "a" * 64}
    first, twice = github.lease(), github.lease(key_name="DATABASE_URL")
    data = body(first, twice)
    data["leases"][1]["parts"] = [part, {**part, "fingerprint": "b" * 64}]
    response = post(client, "/v1/leases", data, github.auth(github.claims()))
    assert (response.status_code, js(response)) == (
        400,
        {"error": "invalid_lease", "message": "leases[1].parts names a part twice"},
    )
    assert [record(app, first.id), record(app, twice.id)] == [None, None]


# --- the post step's report -----------------------------------------------------------------


def test_post_step_reports_what_it_retired_and_what_it_could_not(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    claims = github.claims()
    done, stuck = (
        github.lease(key_name="DONE", lifetime=Lifetime.JOB),
        github.lease(key_name="STUCK", lifetime=Lifetime.JOB),
    )
    post(client, "/v1/leases", body(done, stuck), github.auth(claims))
    report = {
        "leases": [
            {"id": done.id, "outcome": "revoked"},
            {
                "id": stuck.id,
                "outcome": "failed",
                "error": "issuer said 503 for postgres://ci:hunter22@db/x",
            },
        ]
    }
    response = post(client, "/v1/leases/retire", report, github.auth(claims))
    assert response.status_code == 200
    assert response.json == {
        "leases": [{"id": done.id, "state": "revoked"}, {"id": stuck.id, "state": "revoking"}]
    }
    with app.extensions["runkeys"].ledger.begin() as conn:
        assert [(e.actor, e.action) for e in history(conn, done.id)][-1] == ("post-step", "revoked")
    stuck_record = stored(app.extensions["runkeys"].ledger, stuck.id)
    assert stuck_record.state is LeaseState.REVOKING
    assert "hunter22" not in (stuck_record.last_error or "")
    assert stuck_record.next_attempt_at is not None


def test_repository_a_cannot_retire_repository_b_leases(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    mine_claims = github.claims()
    theirs_claims = github.claims(repo=github.other_repo, run_id=mine_claims.run_id)
    mine, theirs = github.lease(), github.lease(repository=github.other_repo.full_name)
    post(client, "/v1/leases", body(mine), github.auth(mine_claims))
    post(client, "/v1/leases", body(theirs), github.auth(theirs_claims))
    report = {
        "leases": [{"id": mine.id, "outcome": "revoked"}, {"id": theirs.id, "outcome": "revoked"}]
    }
    response = post(client, "/v1/leases/retire", report, github.auth(mine_claims))
    assert response.status_code == 404
    assert js(response)["not_found"] == [theirs.id]
    assert js(response)["leases"] == [{"id": mine.id, "state": "revoked"}]
    assert record(app, theirs.id).state is LeaseState.ACTIVE
    another_run = github.claims()
    response = post(
        client,
        "/v1/leases/retire",
        {"leases": [{"id": mine.id, "outcome": "failed"}]},
        github.auth(another_run),
    )
    assert response.status_code == 404


def test_post_step_is_told_which_secrets_a_newer_run_wrote_since(
    client: FlaskClient, github: GitHub, app: Flask, clock: Clock
) -> None:
    """Two runs at once mint the same `job` key into one environment. The earlier run's post
    step revoked its key and has not deleted the secret: the answer says the later run's lease
    wrote it since, so it is kept (and its history says so); the later run's is its own."""
    earlier_claims, later_claims = github.claims(), github.claims()
    earlier, later, alone = (
        github.lease(key_name="SESSION_KEY", lifetime=Lifetime.JOB, environment="ci-pr-7"),
        github.lease(key_name="session_key", lifetime=Lifetime.JOB, environment="CI-PR-7"),
        github.lease(key_name="OTHER_KEY", lifetime=Lifetime.JOB, environment="ci-pr-7"),
    )
    post(client, "/v1/leases", body(earlier, alone), github.auth(earlier_claims))
    clock.advance(seconds=5)
    post(client, "/v1/leases", body(later), github.auth(later_claims))
    report = {
        "leases": [
            {"id": earlier.id, "outcome": "revoked", "secret_pending": True},
            {"id": alone.id, "outcome": "revoked", "secret_pending": True},
        ]
    }
    answer = post(client, "/v1/leases/retire", report, github.auth(earlier_claims))
    assert answer.status_code == 200
    assert answer.json == {
        "leases": [
            {"id": earlier.id, "state": "revoked", "secret_kept_for": later.id},
            {"id": alone.id, "state": "revoked", "secret_kept_for": None},
        ]
    }
    with app.extensions["runkeys"].ledger.begin() as conn:
        events = history(conn, earlier.id)
        assert [(e.actor, e.action) for e in events][-2:] == [
            ("post-step", "revoked"),
            ("post-step", "secret_kept"),
        ]
        assert (
            events[-1].detail == f"secret kept: lease {later.id} wrote it since and is still live"
        )
        assert [e.action for e in history(conn, alone.id)][-1] == "revoked"
    # The answer was lost and the report is sent again: the same answer, nothing recorded twice.
    again = post(client, "/v1/leases/retire", report, github.auth(earlier_claims))
    assert again.json == answer.json
    with app.extensions["runkeys"].ledger.begin() as conn:
        assert [e.action for e in history(conn, earlier.id)].count("secret_kept") == 1
    # The later run's post step: nothing newer wrote it, the secret is its own to delete.
    mine = {"leases": [{"id": later.id, "outcome": "revoked", "secret_pending": True}]}
    answer = post(client, "/v1/leases/retire", mine, github.auth(later_claims))
    assert answer.json == {
        "leases": [{"id": later.id, "state": "revoked", "secret_kept_for": None}]
    }


def test_a_secret_the_post_step_could_not_delete_goes_to_the_worker(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    """Told to delete the secret of a key it revoked, the post step could not: its second report
    queues the lease again, and the worker deletes the secret (asking the ledger itself)."""
    claims = github.claims()
    item = github.lease(key_name="SESSION_KEY", lifetime=Lifetime.JOB)
    post(client, "/v1/leases", body(item), github.auth(claims))
    pending = {"leases": [{"id": item.id, "outcome": "revoked", "secret_pending": True}]}
    assert post(client, "/v1/leases/retire", pending, github.auth(claims)).status_code == 200
    failed = {
        "leases": [{"id": item.id, "outcome": "failed", "error": "500 while deleting secret"}]
    }
    response = post(client, "/v1/leases/retire", failed, github.auth(claims))
    assert response.json == {"leases": [{"id": item.id, "state": "revoking"}]}
    queued = stored(app.extensions["runkeys"].ledger, item.id)
    assert (queued.state, queued.retired_at) == (LeaseState.REVOKING, None)
    assert queued.next_attempt_at is not None
    assert RevocationWorker(app.extensions["runkeys"]).drain() == 1
    assert stored(app.extensions["runkeys"].ledger, item.id).state is LeaseState.REVOKED
    # A lease the worker (not the post step) revoked is not reopened by a report.
    item_b = github.lease(key_name="RUN_KEY")
    post(client, "/v1/leases", body(item_b), github.auth(claims))
    with app.extensions["runkeys"].ledger.begin() as conn:
        conn.execute(
            update(tables.leases)
            .where(tables.leases.c.id == item_b.id)
            .values(state=LeaseState.REVOKED.value, retire_reason="webhook: run completed")
        )
    response = post(
        client,
        "/v1/leases/retire",
        {"leases": [{"id": item_b.id, "outcome": "failed"}]},
        github.auth(claims),
    )
    assert response.json == {"leases": [{"id": item_b.id, "state": "revoked"}]}


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        (
            {"outcome": "revoked", "secret_pending": "yes"},
            "Expected `bool`, got `str` - at `$.leases[0].secret_pending`",
        ),
        ({"outcome": "failed", "secret_pending": True}, "secret_pending goes with outcome revoked"),
    ],
)
def test_a_malformed_secret_pending_is_refused(
    client: FlaskClient, github: GitHub, item: dict[str, Any], fragment: str
) -> None:
    claims = github.claims()
    leased = github.lease(lifetime=Lifetime.JOB)
    post(client, "/v1/leases", body(leased), github.auth(claims))
    response = post(
        client, "/v1/leases/retire", {"leases": [{"id": leased.id, **item}]}, github.auth(claims)
    )
    assert (response.status_code, js(response)["error"]) == (400, "invalid_lease")
    assert fragment in js(response)["message"]


def test_the_post_steps_reason_is_kept_cut_to_300_characters(
    client: FlaskClient, github: GitHub, app: Flask
) -> None:
    """The reason the post step gives is what an operator reads on the lease: kept as sent,
    none recorded as none, and a long one cut to 300 characters, marked as cut."""
    claims = github.claims()
    told, silent, long = (
        github.lease(key_name="TOLD", lifetime=Lifetime.JOB),
        github.lease(key_name="SILENT", lifetime=Lifetime.JOB),
        github.lease(key_name="LONG", lifetime=Lifetime.JOB),
    )
    post(client, "/v1/leases", body(told, silent, long), github.auth(claims))
    report = {
        "leases": [
            {"id": told.id, "outcome": "failed", "error": "issuer answered 503"},
            {"id": silent.id, "outcome": "failed"},
            {"id": long.id, "outcome": "failed", "error": "step " * 80},
        ]
    }
    assert post(client, "/v1/leases/retire", report, github.auth(claims)).status_code == 200
    ledger = app.extensions["runkeys"].ledger
    assert stored(ledger, told.id).last_error == "issuer answered 503"
    assert stored(ledger, silent.id).last_error is None
    assert stored(ledger, long.id).last_error == ("step " * 80)[:299] + "…"
    with ledger.begin() as conn:
        assert (
            history(conn, silent.id)[-1].detail == "post step could not retire it: no reason given"
        )
