"""`POST /v1/leases/check` (the `check` sub-action's preflight) through the Flask test client, on
both engines, with tokens from the sandbox's OIDC issuer. Hostile callers first: a sibling
repository of the same owner (same installation, same run id, same environment name, the right
fingerprints) learns nothing; tokens that are not this service's are refused; bodies out of
range are 400, never 500. Then what each answer says, the oracles written here: lease times
from the test's clock, retirements by signed webhooks, the sweeper and the post step."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from handler.ledger.queue import LeasesById, queue
from handler.sweeper import Sweeper
from runkeys.leases import LeaseRequest, Lifetime
from runkeys_sandbox.server import RunClaims
from tests.encoded_forms import encoded_forms
from tests.service import kit
from tests.service.conftest import GitHub
from tests.service.kit import Clock, body, js
from tests.service.test_attacks_almost_right import (
    apply_recorded,
    deliver,
    post,
    sibling_in_the_installation,
)

ENVIRONMENT = "ci-env"
CHECK = "/v1/leases/check"


@dataclass(frozen=True)
class Minted:
    """A key as the runkeys step of `run_id` minted it into ENVIRONMENT: its lease and value."""

    lease: LeaseRequest
    value: str
    run_id: int


def sha256(value: str) -> str:
    # The oracle, written here: SHA-256 of the UTF-8 value, lower-case hex.
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def mint(
    client: FlaskClient,
    github: GitHub,
    clock: Clock,
    *,
    run_id: int,
    key_name: str = "API_TOKEN",
    ttl: timedelta = timedelta(hours=1),
    lifetime: Lifetime = Lifetime.RUN,
    issued_ago: timedelta = timedelta(0),
    environment: str | None = ENVIRONMENT,
    secret: bool = True,
) -> Minted:
    """`environment=None`: a repository secret; `secret=False`: no secret written (a key handed
    to its job as an output only)."""
    value = f"rk_{secrets.token_urlsafe(32)}"
    item = github.lease(
        key_name=key_name,
        environment=environment,
        secret=secret,
        lifetime=lifetime,
        ttl=ttl,
        now=clock.now - issued_ago,
    )
    item = msgspec.structs.replace(item, fingerprint=sha256(value))
    # The minting job runs in no environment; it writes the environment's secret.
    response = post(client, "/v1/leases", body(item), github.auth(github.claims(run_id)))
    assert response.status_code == 201, response.json
    return Minted(item, value, run_id)


def consumer(github: GitHub, run_id: int, **fields: Any) -> RunClaims:
    """A later job of the run that names the environment and reads its secrets."""
    return github.claims(run_id, environment=ENVIRONMENT, **fields)


def ask(
    client: FlaskClient, github: GitHub, claims: RunClaims, held: dict[str, str]
) -> TestResponse:
    keys = [{"name": name, "fingerprint": sha256(value)} for name, value in held.items()]
    return post(client, CHECK, {"keys": keys}, github.auth(claims))


def answers(response: TestResponse) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.json
    return {key["name"]: key for key in js(response)["keys"]}


def iso(moment: Any) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S.%fZ}"


# --- hostile callers ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["app2", "ap", "app-fork"])
def test_a_sibling_repository_of_the_same_owner_learns_nothing(
    client: FlaskClient, github: GitHub, clock: Clock, name: str
) -> None:
    """Same owner, same installation, a run of the same id, an environment of the same name,
    and the right values: still not this repository's leases."""
    minted = mint(client, github, clock, run_id=777001)
    sibling = sibling_in_the_installation(github, name)
    claims = github.claims(777001, repo=sibling, environment=ENVIRONMENT)
    found = answers(ask(client, github, claims, {"API_TOKEN": minted.value}))
    assert found == {"API_TOKEN": {"name": "API_TOKEN", "status": "unknown"}}
    # …while the repository's own job, asking the same, is answered.
    own = answers(ask(client, github, consumer(github, 777001), {"API_TOKEN": minted.value}))
    assert own["API_TOKEN"]["status"] == "live"


def test_a_repository_that_kept_the_name_but_not_the_id_learns_nothing(
    client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    """The token's repository id decides, not its name: a token naming this repository but
    carrying the id of another one sees the other one's (here: none)."""
    minted = mint(client, github, clock, run_id=777002)
    sibling = sibling_in_the_installation(github)
    claims = consumer(github, 777002, repository_id=sibling.id)
    found = answers(ask(client, github, claims, {"API_TOKEN": minted.value}))
    assert found["API_TOKEN"]["status"] == "unknown"


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        ({"aud": "https://runkeys.example/service2"}, "audience"),
        ({"aud": "https://runkeys.example/servic"}, "audience"),
        ({"exp": 1_700_000_000, "iat": 1_699_999_000, "nbf": 1_699_999_000}, "expired"),
    ],
    ids=["audience-one-more", "audience-one-less", "expired"],
)
def test_a_token_not_for_this_service_or_expired_is_401_with_a_clear_message(
    client: FlaskClient, github: GitHub, clock: Clock, overrides: dict[str, Any], said: str
) -> None:
    minted = mint(client, github, clock, run_id=777003)
    claims = consumer(github, 777003)
    keys = {"keys": [{"name": "API_TOKEN", "fingerprint": sha256(minted.value)}]}
    headers = github.auth(claims, **overrides)
    response = post(client, CHECK, keys, headers)
    assert (response.status_code, js(response)["error"]) == (401, "invalid_token")
    assert said in js(response)["message"]
    assert headers["Authorization"].split()[1] not in response.get_data(as_text=True)


def test_without_a_token_it_is_401(client: FlaskClient) -> None:
    response = post(client, CHECK, {"keys": [{"name": "A", "fingerprint": "0" * 64}]}, {})
    assert (response.status_code, js(response)["error"]) == (401, "missing_token")


def test_a_repository_without_the_app_is_403(client: FlaskClient, github: GitHub) -> None:
    stranger = github.sandbox.add_repository(f"{github.repo.owner}-x/app")
    claims = github.claims(repo=stranger)
    response = post(
        client, CHECK, {"keys": [{"name": "A", "fingerprint": "0" * 64}]}, github.auth(claims)
    )
    assert (response.status_code, js(response)["error"]) == (403, "not_installed")


GOOD = "a" * 64


@pytest.mark.parametrize(
    ("data", "said"),
    [
        ({"keys": []}, "length >= 1"),
        ({"keys": [{"name": f"K{i}", "fingerprint": GOOD} for i in range(101)]}, "length <= 100"),
        ({"keys": [{"name": "K" * 256, "fingerprint": GOOD}]}, "length <= 255"),
        ({"keys": [{"name": "API-TOKEN", "fingerprint": GOOD}]}, "$.keys[0].name"),
        ({"keys": [{"name": "1TOKEN", "fingerprint": GOOD}]}, "$.keys[0].name"),
        ({"keys": [{"name": "A", "fingerprint": GOOD[:-1]}]}, "$.keys[0].fingerprint"),
        ({"keys": [{"name": "A", "fingerprint": GOOD + "a"}]}, "$.keys[0].fingerprint"),
        ({"keys": [{"name": "A", "fingerprint": GOOD[:-1] + "A"}]}, "$.keys[0].fingerprint"),
        ({"keys": [{"name": "A", "fingerprint": GOOD[:-1] + "g"}]}, "$.keys[0].fingerprint"),
        ({"keys": [{"name": "A", "fingerprint": 7}]}, "$.keys[0].fingerprint"),
        ({"keys": [{"name": "A", "fingerprint": GOOD, "value": "x"}]}, "unknown field"),
        ({"keys": [{"name": "A"}]}, "fingerprint"),
        ({"keys": "API_TOKEN"}, "$.keys"),
        (
            {"keys": [{"name": "A", "fingerprint": GOOD}, {"name": "A", "fingerprint": GOOD}]},
            "twice",
        ),
        ([], "Expected `object`"),
    ],
    ids=[
        "none",
        "101-keys",
        "huge-name",
        "dash",
        "digit-first",
        "short-print",
        "long-print",
        "upper-hex",
        "not-hex",
        "number",
        "a-value-field",
        "no-print",
        "not-a-list",
        "twice",
        "not-an-object",
    ],
)
def test_bodies_out_of_range_are_400_naming_the_field(
    client: FlaskClient, github: GitHub, data: Any, said: str
) -> None:
    response = post(client, CHECK, data, github.auth(github.claims()))
    assert (response.status_code, js(response)["error"]) == (400, "invalid_request")
    assert said in js(response)["message"]


def test_a_body_that_is_not_json_is_400_or_415(client: FlaskClient, github: GitHub) -> None:
    headers = github.auth(github.claims())
    response = client.post(CHECK, data=b"{", headers=headers, content_type="application/json")
    assert (response.status_code, js(response)["error"]) == (400, "invalid_request")
    headers = github.auth(github.claims())
    response = client.post(CHECK, data=b"keys", headers=headers, content_type="text/plain")
    assert response.status_code == 415


# --- what the answers say ---------------------------------------------------------------------


def test_a_live_key_is_answered_with_its_expiry_and_remaining_time(
    client: FlaskClient, github: GitHub, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    minted = mint(client, github, clock, run_id=777010, ttl=timedelta(hours=1))
    clock.advance(minutes=50)
    response = ask(client, github, consumer(github, 777010), {"API_TOKEN": minted.value})
    # One log line says who asked and what they heard; nothing of the value, not even its print.
    (logged,) = [r for r in caplog.records if r.getMessage() == "keys checked"]
    assert getattr(logged, "fields", {})["keys"] == {"API_TOKEN": "live"}
    logs = "\n".join(r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records)
    for form in [*encoded_forms(minted.value), sha256(minted.value)]:
        assert form not in logs
        assert form not in response.get_data(as_text=True)
    assert js(response)["now"] == iso(clock.now)
    assert answers(response)["API_TOKEN"] == {
        "name": "API_TOKEN",
        "status": "live",
        "expires_at": iso(minted.lease.expires_at),
        "remaining_seconds": 600,
        "run_id": 777010,
        "run_attempt": 1,
    }


def test_a_value_wrong_in_its_last_character_is_not_the_live_leases(
    client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    minted = mint(client, github, clock, run_id=777011)
    almost = minted.value[:-1] + ("A" if minted.value[-1] != "A" else "B")
    found = answers(ask(client, github, consumer(github, 777011), {"API_TOKEN": almost}))
    assert found["API_TOKEN"] == {
        "name": "API_TOKEN",
        "status": "stale",
        "expires_at": iso(minted.lease.expires_at),
        "run_id": 777011,
        "run_attempt": 1,
        "value_known": False,
    }


def test_a_key_of_another_name_or_no_lease_is_unknown(
    client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    minted = mint(client, github, clock, run_id=777012)
    found = answers(
        ask(
            client,
            github,
            consumer(github, 777012),
            # The right value under another name; a name no lease has.
            {"API_TOKEN2": minted.value, "OTHER": "x" * 40},
        )
    )
    assert {name: item["status"] for name, item in found.items()} == {
        "API_TOKEN2": "unknown",
        "OTHER": "unknown",
    }


def test_a_re_run_after_the_run_completed_hears_retired_with_the_completion(
    client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    minted = mint(client, github, clock, run_id=777020)
    clock.advance(minutes=5)
    completed_at = clock.now
    payload = kit.workflow_run_completed(
        github.repo.id, github.repo.full_name, 777020, 1, github.installation.id
    )
    assert deliver(client, "workflow_run", payload).status_code == 200
    apply_recorded(client.application)
    clock.advance(minutes=3)
    rerun = consumer(github, 777020, run_attempt=2)
    found = answers(ask(client, github, rerun, {"API_TOKEN": minted.value}))["API_TOKEN"]
    assert found["reason"].startswith("webhook workflow_run.completed delivery ")
    assert {k: v for k, v in found.items() if k != "reason"} == {
        "name": "API_TOKEN",
        "status": "retired",
        "expires_at": iso(minted.lease.expires_at),
        "retired_at": iso(completed_at),
        "cause": "run_completed",
        "run_id": 777020,
        "run_attempt": 1,
    }
    clock.advance(hours=1)  # past its expiry too: still retired by the completion, not expired
    later = answers(ask(client, github, rerun, {"API_TOKEN": minted.value}))["API_TOKEN"]
    assert (later["status"], later["cause"]) == ("retired", "run_completed")


def test_a_pull_requests_key_after_it_closed_is_retired_with_that_cause(
    client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    value = f"rk_{secrets.token_urlsafe(32)}"
    claims = github.claims(777021, ref="refs/pull/9/merge", event_name="pull_request")
    item = msgspec.structs.replace(
        github.lease(environment=ENVIRONMENT, lifetime=Lifetime.PR, now=clock.now),
        fingerprint=sha256(value),
    )
    assert post(client, "/v1/leases", body(item), github.auth(claims)).status_code == 201
    payload = kit.pull_request_closed(
        github.repo.id, github.repo.full_name, 9, github.installation.id
    )
    clock.advance(seconds=2)  # a close is for leases registered before its second
    assert deliver(client, "pull_request", payload).status_code == 200
    found = answers(ask(client, github, consumer(github, 777021), {"API_TOKEN": value}))
    assert (found["API_TOKEN"]["status"], found["API_TOKEN"]["cause"]) == (
        "retired",
        "pull_request_closed",
    )


def test_a_job_key_its_post_step_retired_is_retired_with_that_cause(
    client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    minted = mint(client, github, clock, run_id=777022, lifetime=Lifetime.JOB)
    report = {"leases": [{"id": minted.lease.id, "outcome": "revoked"}]}
    clock.advance(minutes=2)
    retired = post(client, "/v1/leases/retire", report, github.auth(github.claims(777022)))
    assert retired.status_code == 200
    found = answers(ask(client, github, consumer(github, 777022), {"API_TOKEN": minted.value}))
    assert found["API_TOKEN"] == {
        "name": "API_TOKEN",
        "status": "retired",
        "expires_at": iso(minted.lease.expires_at),
        "retired_at": iso(clock.now),
        "cause": "post_step",
        "reason": "post-step: retired by the job",
        "run_id": 777022,
        "run_attempt": 1,
    }


def test_past_its_ttl_a_key_is_expired_before_and_after_the_sweeper(
    client: FlaskClient, github: GitHub, clock: Clock, app: Flask
) -> None:
    minted = mint(client, github, clock, run_id=777030, ttl=timedelta(minutes=30))
    clock.advance(minutes=30)  # the second it expires: no longer live
    before = answers(ask(client, github, consumer(github, 777030), {"API_TOKEN": minted.value}))
    assert before["API_TOKEN"] == {
        "name": "API_TOKEN",
        "status": "expired",
        "expires_at": iso(minted.lease.expires_at),
        "run_id": 777030,
        "run_attempt": 1,
    }
    Sweeper(app.extensions["runkeys"]).sweep(reconcile=False)
    after = answers(ask(client, github, consumer(github, 777030), {"API_TOKEN": minted.value}))
    assert after["API_TOKEN"]["status"] == "expired"
    assert (after["API_TOKEN"]["cause"], after["API_TOKEN"]["reason"]) == ("ttl", "sweeper: ttl")
    assert after["API_TOKEN"]["retired_at"] == iso(clock.now)


def test_an_older_runs_retired_value_is_stale_naming_that_run(
    client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    """Run 777040 minted into the environment and completed; run 777041 minted again; a job
    of run 777041 still holds run 777040's value (a secret read before the new one landed)."""
    old = mint(client, github, clock, run_id=777040)
    payload = kit.workflow_run_completed(
        github.repo.id, github.repo.full_name, 777040, 1, github.installation.id
    )
    clock.advance(minutes=1)
    retired_at = clock.now
    assert deliver(client, "workflow_run", payload).status_code == 200
    apply_recorded(client.application)
    clock.advance(minutes=1)
    new = mint(client, github, clock, run_id=777041)
    found = answers(ask(client, github, consumer(github, 777041), {"API_TOKEN": old.value}))
    assert found["API_TOKEN"]["status"] == "stale"
    assert found["API_TOKEN"]["value_known"] is True
    assert (found["API_TOKEN"]["run_id"], found["API_TOKEN"]["cause"]) == (777040, "run_completed")
    assert found["API_TOKEN"]["retired_at"] == iso(retired_at)
    # The new value is live.
    fresh = answers(ask(client, github, consumer(github, 777041), {"API_TOKEN": new.value}))
    assert (fresh["API_TOKEN"]["status"], fresh["API_TOKEN"]["run_id"]) == ("live", 777041)


def test_an_older_live_value_replaced_by_a_newer_lease_is_stale(
    client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    old = mint(client, github, clock, run_id=777050)
    clock.advance(minutes=1)
    mint(client, github, clock, run_id=777051)
    found = answers(ask(client, github, consumer(github, 777051), {"API_TOKEN": old.value}))
    assert found["API_TOKEN"]["status"] == "stale"
    assert (found["API_TOKEN"]["run_id"], found["API_TOKEN"]["value_known"]) == (777050, True)
    assert "retired_at" not in found["API_TOKEN"]


def test_a_job_of_another_run_in_the_environment_named_in_other_case_hears_stale(
    client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    """Run 777060 minted into the environment, then run 777061; a job of a third run, in the
    environment as `CI-ENV` (GitHub ignores case), holding 777060's value: stale, since the
    environment's newer lease is the one it should hold. Outside the environment, the same
    value is that lease's, and live."""
    old = mint(client, github, clock, run_id=777060)
    clock.advance(minutes=1)
    mint(client, github, clock, run_id=777061)
    shouting = github.claims(777062, environment=ENVIRONMENT.upper())
    found = answers(ask(client, github, shouting, {"API_TOKEN": old.value}))["API_TOKEN"]
    assert (found["status"], found["run_id"], found["value_known"]) == ("stale", 777060, True)
    elsewhere = github.claims(777062, environment="other-env")
    found = answers(ask(client, github, elsewhere, {"API_TOKEN": old.value}))["API_TOKEN"]
    assert (found["status"], found["run_id"]) == ("live", 777060)
    # A job of the newer run, outside the environment: its own run's lease is the one to hold.
    own_run = github.claims(777061, environment="other-env")
    found = answers(ask(client, github, own_run, {"API_TOKEN": old.value}))["API_TOKEN"]
    assert (found["status"], found["run_id"]) == ("stale", 777060)


def test_an_output_only_key_of_another_run_is_that_leases_and_live(
    client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    """Run 777070 handed API_TOKEN to its job as an output only (no secret written); a job of
    run 777071 in the environment holds that value under the same name: it is run 777070's
    lease, live, and no lease of the environment is the one to hold instead."""
    output = mint(client, github, clock, run_id=777070, secret=False)
    found = answers(ask(client, github, consumer(github, 777071), {"API_TOKEN": output.value}))
    assert (found["API_TOKEN"]["status"], found["API_TOKEN"]["run_id"]) == ("live", 777070)


@pytest.mark.parametrize(("written_to", "job_in"), [(None, "none"), (None, "None"), ("none", None)])
def test_an_environment_named_none_is_not_a_repository_secrets_absent_environment(
    client: FlaskClient,
    github: GitHub,
    clock: Clock,
    written_to: str | None,
    job_in: str | None,
) -> None:
    """Run 777080 wrote API_TOKEN to `written_to` (None: the repository's secrets); a job of
    run 777081 in environment `job_in` holds some other API_TOKEN, and run 777080's value under
    another name. An environment literally named `none` is not "no environment": that lease
    is not the one the job should hold, and its API_TOKEN is no lease's."""
    other = mint(client, github, clock, run_id=777080, environment=written_to)
    job = github.claims(777081, environment=job_in)
    held = {"API_TOKEN": f"rk_{secrets.token_urlsafe(32)}", "COPIED": other.value}
    found = answers(ask(client, github, job, held))
    assert found["API_TOKEN"]["status"] == "unknown"
    assert found["COPIED"]["status"] == "unknown"


def test_a_reason_the_service_does_not_know_flows_through(
    client: FlaskClient, github: GitHub, clock: Clock, app: Flask
) -> None:
    """A retirement written by code this module does not know (a later kind, such as a leak
    found in the logs) is answered with the ledger's own words."""
    minted = mint(client, github, clock, run_id=777060)
    with app.extensions["runkeys"].ledger.begin() as conn:
        queue(
            conn,
            LeasesById((minted.lease.id,)),
            actor="test",
            reason="leaked_in_logs: job test step 3 line 12",
            now=clock.now,
        )
    found = answers(ask(client, github, consumer(github, 777060), {"API_TOKEN": minted.value}))
    assert (found["API_TOKEN"]["cause"], found["API_TOKEN"]["reason"]) == (
        "leaked",
        "leaked_in_logs: job test step 3 line 12",
    )


def test_asking_writes_nothing_to_the_ledger(
    client: FlaskClient, github: GitHub, clock: Clock, app: Flask
) -> None:
    minted = mint(client, github, clock, run_id=777070)
    ledger = app.extensions["runkeys"].ledger
    before = kit.stored(ledger, minted.lease.id)
    ask(client, github, consumer(github, 777070), {"API_TOKEN": minted.value})
    assert kit.stored(ledger, minted.lease.id) == before
