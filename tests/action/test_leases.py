"""Leases: registered with the service, authenticated by the job's OIDC token, before any value
is delivered; retried briefly on 5xx; a 4xx is a clear error that rolls everything back."""

from __future__ import annotations

import json

import pytest
import requests

from runkeys.errors import ConfigError, LeaseServiceError
from runkeys.lease_client import LeaseClient, RetireOutcome
from runkeys.leases import fingerprint
from runkeys.oidc import RunnerOIDC
from runkeys.retrying import Retrying
from runkeys.sandbox import RunClaims
from tests.action.conftest import GitHub
from tests.action.lease_service import LeaseService

KEYS = (
    "API_TOKEN: {provider: random, ttl: 30m, lifetime: run}\n"
    "SESSION_KEY: {provider: random, format: hex, lifetime: job}\n"
)


def test_every_lease_is_registered_before_any_value_is_delivered(
    github: GitHub, service: LeaseService
) -> None:
    run = github.step.run(github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"))
    assert run.returncode == 0, run.lines
    (registration,) = service.received
    assert registration.path == "/v1/leases"
    assert registration.status == 201
    # The service learns repository and run from the verified token, not the body.
    assert registration.claims is not None
    assert registration.claims["repository"] == "octo/app"
    assert registration.claims["run_id"] == "4242"
    leases = {lease["key_name"]: lease for lease in registration.body["leases"]}
    assert set(leases) == {"API_TOKEN", "SESSION_KEY"}
    token = leases["API_TOKEN"]
    assert token["fingerprint"] == fingerprint(run.env["API_TOKEN"])
    assert token["lifetime"] == "run"
    assert token["provider"] == "random"
    assert token["secret"] == {
        "repository": "octo/app",
        "name": "API_TOKEN",
        "environment": "ci-run-4242",
    }
    assert token["environment_created"] is True
    assert {k["lease_id"] for k in run.keys_json()} == {t["id"] for t in leases.values()}
    # No value in what the service was sent, and the token was masked like a value.
    run.assert_nowhere(run.env.values())
    for value in run.env.values():
        assert value not in json.dumps(registration.body)
    assert "Leases are registered with the runkeys service" in run.summary
    assert run.annotations("warning") == []
    # Registered before delivery: the PUTs of the secrets came after the registration.
    assert run.lines.index("Registered 2 lease(s) with the runkeys service.") < next(
        i for i, line in enumerate(run.lines) if line.startswith("Wrote 2 secret(s)")
    )


def test_the_oidc_token_is_masked_and_fresh_for_every_attempt(
    github: GitHub, service: LeaseService
) -> None:
    service.fail("/v1/leases", 503, times=2)
    run = github.step.run(github.app_inputs(keys=KEYS))
    assert run.returncode == 0, run.lines
    statuses = [r.status for r in service.received]
    assert statuses == [503, 503, 201]  # the stand-in refuses a token it has seen (jti)
    oidc_calls = [r for r in github.sandbox.requests if r.path.endswith("/idtoken")]
    assert len(oidc_calls) == 3
    tokens = [r.response_body["value"] for r in oidc_calls]
    assert set(tokens) <= set(run.masks)
    assert oidc_calls[0].query["audience"] == "https://runkeys.test"


def test_a_refusal_is_a_clear_error_and_nothing_is_left(
    github: GitHub, service: LeaseService
) -> None:
    service.fail("/v1/leases", 403, body={"error": "forbidden", "message": "repo not allowed"})
    run = github.step.run(github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"))
    assert run.returncode == 1
    (error,) = run.annotations("error")
    assert error[0] == "runkeys: Lease service error"
    assert "403" in error[1]
    assert "forbidden: repo not allowed" in error[1]
    # A 4xx is not retried, and registered nothing: the service is not told of a rollback.
    assert [r.path for r in service.received] == ["/v1/leases"]
    assert [c for c in github.writes() if "/environments/" in c] == []  # nothing written
    assert run.env == {}
    assert any("Rolling back 2 minted key(s)" in w for _, w in run.annotations("warning"))


def test_a_service_that_stays_down_fails_the_step_after_a_few_tries(
    github: GitHub, service: LeaseService
) -> None:
    service.fail("/v1/leases", 500, times=4)
    run = github.step.run(github.app_inputs(keys=KEYS))
    assert run.returncode == 1
    assert "500" in run.annotations("error")[0][1]
    assert [r.path for r in service.received].count("/v1/leases") == 4
    # The last attempt may have been stored: the rollback reports the leases retired.
    (retired,) = service.bodies("/v1/leases/retire")
    assert sorted(item["outcome"] for item in retired["leases"]) == ["revoked", "revoked"]


def test_without_id_token_permission_the_error_shows_the_yaml(github: GitHub) -> None:
    run = github.step.run(
        github.app_inputs(keys=KEYS, **{"service-url": "http://127.0.0.1:9"}),
    )
    assert run.returncode == 1
    message = run.annotations("error")[0][1]
    assert "permissions:\n      id-token: write" in message
    assert run.masks == []


def test_the_runner_refusing_a_token_is_explained(github: GitHub) -> None:
    oidc = RunnerOIDC(
        f"{github.sandbox.url}/_services/pipelines/_apis/distributedtask/hubs/Actions/plans/"
        "p/jobs/j/idtoken?api-version=2.0",
        "not-the-request-token",
        "aud",
    )
    with pytest.raises(LeaseServiceError, match="refused an OIDC token"):
        oidc.token()
    with pytest.raises(ConfigError, match="ACTIONS_ID_TOKEN_REQUEST_URL"):
        RunnerOIDC(None, None, "aud")


def test_reposting_the_same_leases_is_idempotent(github: GitHub, service: LeaseService) -> None:
    claims = RunClaims(repository="octo/app", repository_id=github.repo.id, run_id=1)
    env = github.sandbox.runner_oidc_env(claims)
    oidc = RunnerOIDC(
        env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"], service.audience
    )
    client = LeaseClient(service.url, oidc.token, retrying=Retrying(backoff=0.01))
    from tests.action.test_issuance import lease_request

    leases = [lease_request("A"), lease_request("B")]
    assert [r.id for r in client.register(leases)] == [lease.id for lease in leases]
    assert [r.id for r in client.register(leases)] == [lease.id for lease in leases]
    assert [r.status for r in service.received] == [201, 200]
    client.retire([RetireOutcome(leases[0].id, "failed", "x" * 500)])
    assert len(service.retired[leases[0].id]["error"]) <= 200


def test_an_unreachable_service_is_named(github: GitHub) -> None:
    client = LeaseClient(
        "http://127.0.0.1:9", lambda: "token", retrying=Retrying(attempts=2, backoff=0.01)
    )
    with pytest.raises(LeaseServiceError, match="could not reach the lease service"):
        client.register([])
    assert requests  # the client speaks requests; nothing else is patched
