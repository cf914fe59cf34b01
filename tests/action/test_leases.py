"""Leases: registered with the service, authenticated by the job's OIDC token, before any value
is delivered; retried briefly on 5xx and 429; another 4xx is a clear error that rolls everything
back."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from runkeys import __version__
from runkeys.errors import ConfigError, LeaseServiceError
from runkeys.http_session import backoff
from runkeys.lease_client import LeaseClient
from runkeys.leases import LeaseRequest, LeaseState, Lifetime, RetireOutcome, SecretTarget
from runkeys.oidc import RunnerOIDC
from runkeys_sandbox.server import RunClaims
from tests.action.conftest import GitHub
from tests.action.service import AUDIENCE, Service


def fresh_lease(name: str) -> LeaseRequest:
    """A random key's lease as the action registers it now; its reference written out as the
    random provider mints it: `random:rk_<16 hex of the id's SHA-256>_<name, lower case>`."""
    lease_id = uuid.uuid4().hex
    digest = hashlib.sha256(lease_id.encode()).hexdigest()[:16]
    now = datetime.now(UTC)
    return LeaseRequest(
        id=lease_id,
        key_name=name,
        provider="random",
        reference=f"random:rk_{digest}_{name.lower()}",
        fingerprint="0" * 64,
        lifetime=Lifetime.RUN,
        issued_at=now,
        expires_at=now + timedelta(hours=1),
    )


KEYS = (
    "API_TOKEN: {provider: random, ttl: 30m, lifetime: run}\n"
    "SESSION_KEY: {provider: random, format: hex, lifetime: job}\n"
)


def test_every_lease_is_registered_before_any_value_is_delivered(
    github: GitHub, service: Service
) -> None:
    run = github.step.run(github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"))
    assert run.returncode == 0, run.lines
    assert service.faults.answered == [("/v1/leases", 201)]
    stored = service.leases()
    assert set(stored) == {"API_TOKEN", "SESSION_KEY"}
    token = stored["API_TOKEN"]
    # The service took repository and run from the verified token.
    assert (token.repository, token.repository_id, token.run_id) == ("octo/app", 1296269, 4242)
    assert token.state is LeaseState.ACTIVE
    assert token.fingerprint == hashlib.sha256(run.env["API_TOKEN"].encode()).hexdigest()
    assert token.lifetime is Lifetime.RUN
    assert token.provider == "random"
    assert token.secret == SecretTarget("octo/app", "API_TOKEN", "ci-run-4242")
    assert stored["SESSION_KEY"].lifetime is Lifetime.JOB
    assert {k["lease_id"] for k in run.keys_json()} == {lease.id for lease in stored.values()}
    # No value in the ledger, and the token was masked like a value.
    run.assert_nowhere(run.env.values())
    for lease in stored.values():
        for value in run.env.values():
            assert value not in json.dumps(lease.to_json())
    assert "Leases are registered with the runkeys service" in run.summary
    assert run.annotations("warning") == []
    # Registered before delivery: the PUTs of the secrets came after the registration.
    assert run.lines.index("Registered 2 lease(s) with the runkeys service.") < next(
        i for i, line in enumerate(run.lines) if line.startswith("Wrote 2 secret(s)")
    )


def test_the_oidc_token_is_masked_and_fresh_for_every_attempt(
    github: GitHub, service: Service
) -> None:
    """The service stores the leases twice over, but its answers are lost on the way: each
    retry carries a new token, as the service accepts a token once."""
    service.faults.fail("/v1/leases", 502, times=2, after=True)
    run = github.step.run(github.app_inputs(keys=KEYS))
    assert run.returncode == 0, [*run.lines, run.stderr]
    assert service.faults.statuses("/v1/leases") == [502, 502, 200]
    assert {lease.state for lease in service.leases().values()} == {LeaseState.ACTIVE}
    oidc_calls = [r for r in github.sandbox.requests if r.path.endswith("/idtoken")]
    assert len(oidc_calls) == 3
    tokens = [r.response_body["value"] for r in oidc_calls]
    assert len(set(tokens)) == 3
    assert set(tokens) <= set(run.masks)
    assert oidc_calls[0].query["audience"] == "https://runkeys.test"


def test_a_refusal_is_a_clear_error_and_nothing_is_left(
    github: GitHub, service: Service, tmp_path: Path
) -> None:
    """A service whose App is not installed on the repository refuses its leases."""
    stranger = Service(github.sandbox, github.sandbox.add_app(), tmp_path / "other")
    try:
        run = github.step.run(
            github.app_inputs(
                keys=KEYS, environment="ci-run-{run_id}", **{"service-url": stranger.url}
            )
        )
    finally:
        stranger.stop()
    assert run.returncode == 1
    (error,) = run.annotations("error")
    assert error[0] == "runkeys: Lease service error"
    assert "answered 403 while registering leases" in error[1]
    assert "not_installed: The runkeys GitHub App is not installed on octo/app" in error[1]
    # A 4xx is not retried, and registered nothing.
    assert stranger.faults.answered[0] == ("/v1/leases", 403)
    assert stranger.leases() == {}
    assert [c for c in github.writes() if "/environments/" in c] == []  # nothing written
    assert run.env == {}
    assert any("Rolling back 2 minted key(s)" in w for _, w in run.annotations("warning"))


def test_a_ttl_beyond_the_services_maximum_is_refused_clearly(
    github: GitHub, service: Service
) -> None:
    """The step may allow longer keys than the service; the service's limit wins, and the
    step says whose limit it is before anything is delivered."""
    keys = "LONG_TOKEN: {provider: random, ttl: 48h, lifetime: ttl}\n"
    inputs = github.app_inputs(keys=keys, environment="ci-run-{run_id}", **{"max-ttl": "72h"})
    run = github.step.run(inputs)
    assert run.returncode == 1
    ((title, message),) = run.annotations("error")
    assert title == "runkeys: Lease service error"
    assert "answered 422 while registering leases: ttl_too_long:" in message
    assert "beyond this service's maximum TTL of 1d from now" in message
    assert service.leases() == {}
    assert github.sandbox.environment_names(github.repo) == []
    assert run.env == {}


def test_a_service_that_stays_down_fails_the_step_after_a_few_tries(
    github: GitHub, service: Service
) -> None:
    """Each attempt was stored, but no answer came back: the rollback retires the leases."""
    service.faults.fail("/v1/leases", 500, times=4, after=True)
    run = github.step.run(github.app_inputs(keys=KEYS))
    assert run.returncode == 1
    assert "500" in run.annotations("error")[0][1]
    assert service.faults.statuses("/v1/leases") == [500, 500, 500, 500]
    assert service.faults.statuses("/v1/leases/retire") == [200]
    stored = service.leases()
    assert set(stored) == {"API_TOKEN", "SESSION_KEY"}
    assert {lease.state for lease in stored.values()} == {LeaseState.REVOKED}
    assert not any("Rollback could not" in w for _, w in run.annotations("warning"))


def test_a_service_that_refuses_connections_is_named(github: GitHub, service: Service) -> None:
    service.refuse_connections()
    run = github.step.run(github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"))
    assert run.returncode == 1
    ((_, message),) = run.annotations("error")
    assert f"could not reach the lease service at {service.url} while registering" in message
    assert service.leases() == {}
    assert github.sandbox.environment_names(github.repo) == []


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


def test_reposting_the_same_leases_is_idempotent(github: GitHub, service: Service) -> None:
    claims = RunClaims(repository="octo/app", repository_id=github.repo.id, run_id=1)
    env = github.sandbox.runner_oidc_env(claims)
    oidc = RunnerOIDC(
        env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"], AUDIENCE
    )
    client = LeaseClient(service.url, oidc.token, retry=backoff(4, factor=0.01, cap=1))
    leases = [fresh_lease("A"), fresh_lease("B")]
    assert [r.id for r in client.register(leases)] == [lease.id for lease in leases]
    assert [r.id for r in client.register(leases)] == [lease.id for lease in leases]
    assert service.faults.statuses("/v1/leases") == [201, 200]
    assert sorted(service.leases()) == ["A", "B"]
    client.retire([RetireOutcome(leases[0].id, "failed", "x" * 500)])
    failed = service.leases()["A"]
    assert failed.state is LeaseState.REVOKING
    assert failed.last_error is not None
    assert failed.last_error.startswith("x" * 150)
    assert len(failed.last_error) <= 200  # cut by the action before it is sent


def test_an_unreachable_service_is_named(github: GitHub) -> None:
    client = LeaseClient(
        "http://127.0.0.1:9", lambda: "token", retry=backoff(2, factor=0.01, cap=1)
    )
    with pytest.raises(LeaseServiceError, match="could not reach the lease service"):
        client.register([])
    assert requests  # the client speaks requests; nothing else is patched


def test_a_429_is_retried_after_the_wait_it_asks_for(github: GitHub, service: Service) -> None:
    """A proxy in front of the service limits the rate: the client waits what `Retry-After`
    says (up to a minute, so a step does not hang), then registers."""
    claims = RunClaims(repository="octo/app", repository_id=github.repo.id, run_id=2)
    env = github.sandbox.runner_oidc_env(claims)
    oidc = RunnerOIDC(
        env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"], AUDIENCE
    )
    waits: list[float] = []
    retry = backoff(4, factor=0.5, jitter=0, cap=60, pause=waits.append)
    client = LeaseClient(service.url, oidc.token, retry=retry)
    service.faults.fail("/v1/leases", 429, retry_after="7")
    service.faults.fail("/v1/leases", 429, retry_after="86400")
    service.faults.fail("/v1/leases", 429)  # no Retry-After: the usual backoff, 3rd failure
    lease = fresh_lease("A")
    assert [r.id for r in client.register([lease])] == [lease.id]
    assert waits == [7.0, 60.0, 2.0]
    assert service.faults.statuses("/v1/leases") == [429, 429, 429, 201]
    assert service.leases()["A"].state is LeaseState.ACTIVE


def test_a_429_that_lasts_says_so(github: GitHub, service: Service) -> None:
    claims = RunClaims(repository="octo/app", repository_id=github.repo.id, run_id=3)
    env = github.sandbox.runner_oidc_env(claims)
    oidc = RunnerOIDC(
        env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"], AUDIENCE
    )
    waits: list[float] = []
    retry = backoff(2, factor=0.5, cap=60, pause=waits.append)
    client = LeaseClient(service.url, oidc.token, retry=retry)
    service.faults.fail("/v1/leases", 429, times=2, retry_after="1")
    with pytest.raises(LeaseServiceError) as raised:
        client.register([fresh_lease("A")])
    assert "answered 429 while registering leases" in raised.value.explain()
    assert "limiting the rate of requests" in raised.value.explain()
    assert waits == [1.0]
    assert service.leases() == {}


def test_a_key_in_another_accounts_repository_is_refused_clearly(
    github: GitHub, service: Service
) -> None:
    """The App is installed on another account's repository too, so the step can add a deploy
    key there; the service revokes only in the token's own account and refuses the lease. The
    step says so and removes the key it added."""
    other = github.sandbox.add_repository("someone-else/fixtures")
    github.sandbox.install(github.app, [other])
    keys = "FIXTURES_SSH_KEY: {provider: deploy-key, repository: someone-else/fixtures}\n"
    run = github.step.run(github.app_inputs(keys=keys, **{"repository-secrets": "true"}))
    assert run.returncode == 1
    ((title, message),) = run.annotations("error")
    assert title == "runkeys: Lease service error"
    assert "answered 422 while registering leases: foreign_repository:" in message
    assert "someone-else/fixtures is not a repository of octo, the token's owner" in message
    assert service.leases() == {}
    added = [c for c in github.writes() if c.startswith("POST /repos/someone-else/fixtures/keys")]
    removed = [
        c for c in github.writes() if c.startswith("DELETE /repos/someone-else/fixtures/keys/")
    ]
    assert (len(added), len(removed)) == (1, 1)
    assert github.sandbox.deploy_keys(other) == []  # rolled back
    assert github.secret("FIXTURES_SSH_KEY") is None


def test_the_action_says_its_version_and_names_a_service_of_another(
    github: GitHub, service: Service
) -> None:
    """The action sends its version on every call; a service of another major version that
    refuses it is named as such, with the tag to use, whatever else its refusal says."""
    run = github.step.run(github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"))
    assert run.returncode == 0, run.lines
    assert service.faults.versions_said == [__version__]
    service.faults.fail("/v1/leases", 401, version="9.1.0")
    run = github.step.run(github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"))
    assert run.returncode == 1
    (error,) = run.annotations("error")
    assert "answered 401 while registering leases" in error[1]
    assert f"the service runs runkeys 9.1.0 and this action runs runkeys {__version__}" in error[1]
    assert "uses: OWNER/runkeys@v9" in error[1]
    assert run.env == {}


def test_a_refusal_from_a_service_of_the_same_series_is_its_own(
    github: GitHub, service: Service
) -> None:
    """The almost-right case: a later patch of the same series is not "another version"."""
    major, minor, _ = __version__.split(".", 2)
    service.faults.fail("/v1/leases", 401, version=f"{major}.{minor}.99")
    run = github.step.run(github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"))
    (error,) = run.annotations("error")
    assert "answered 401 while registering leases: injected: a proxy's answer" in error[1]
    assert "runs runkeys" not in error[1]
