"""Rollback (issue 3 item 8): any failure after the first mint revokes what was minted and deletes
what was written before the step fails. Each stage is failed in turn, for real: GitHub faults
in the sandbox, a failing service, an unwritable GITHUB_ENV. The cleanup only warns; the error
is the cause."""

from __future__ import annotations

import json
from pathlib import Path

from runkeys.leases import LeaseState
from tests.action.conftest import GitHub
from tests.action.harness import Run
from tests.action.service import Service

KEYS = (
    "API_TOKEN: {provider: random, lifetime: run}\n"
    "SIGNING_SECRET: {provider: random, format: hex, lifetime: job}\n"
)
ENV = "/repos/octo/app/environments/ci-run-4242"


def assert_rolled_back(run: Run, github: GitHub, service: Service, cause: str) -> None:
    assert run.returncode == 1
    (error,) = run.annotations("error")
    assert cause in error[1], error[1]
    warnings = [message for _, message in run.annotations("warning")]
    assert any("Rolling back 2 minted key(s)" in w for w in warnings)
    assert not any("Rollback could not" in w for w in warnings), warnings
    # Nothing is left: no environment, no secret, nothing for the job, nothing for the post step.
    assert github.sandbox.environment_names(github.repo) == []
    assert run.env == {}
    assert run.outputs == {}
    assert json.loads(run.state["leases"]) == {
        "version": 1,
        "created_environment": None,
        "leases": [],
    }
    # The service registered the leases and was told they are retired.
    assert service.faults.statuses("/v1/leases/retire") == [200]
    stored = service.leases()
    assert sorted(stored) == ["API_TOKEN", "SIGNING_SECRET"]
    assert {lease.state for lease in stored.values()} == {LeaseState.REVOKED}
    # Values were masked before anything else, and appear nowhere they should not.
    assert len(run.masks) >= 2


def test_a_secret_put_that_keeps_failing(github: GitHub, service: Service) -> None:
    github.sandbox.inject_fault("PUT", r"/secrets/SIGNING_SECRET$", status=502, times=None)
    run = github.step.run(github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"))
    assert_rolled_back(run, github, service, "502 while writing secret SIGNING_SECRET")
    calls = github.calls()
    assert calls.count(f"PUT {ENV}/secrets/SIGNING_SECRET") == 3  # tried, then retried twice
    # The written secret goes with the environment this step created: one DELETE.
    assert calls[-1] == f"DELETE {ENV}"
    assert not [call for call in calls if call.startswith(f"DELETE {ENV}/")]


def test_creating_the_environment_fails(github: GitHub, service: Service) -> None:
    refusal = {
        "message": "Validation Failed",
        "documentation_url": "https://docs.github.com/rest/deployments/environments"
        "#create-or-update-an-environment",
        "status": "422",
    }
    github.sandbox.inject_fault("PUT", r"/environments/ci-run-4242$", status=422, body=refusal)
    run = github.step.run(github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"))
    assert_rolled_back(run, github, service, "422 while creating environment ci-run-4242")
    assert not any("/secrets/" in call for call in github.writes())


def test_reading_the_new_environments_key_fails(github: GitHub, service: Service) -> None:
    github.sandbox.inject_fault("GET", r"/secrets/public-key$", status=500, times=None)
    run = github.step.run(github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"))
    assert_rolled_back(run, github, service, "500 while reading the secrets' public key")
    assert github.calls()[-1] == f"DELETE {ENV}"


def test_the_service_failing_to_register(github: GitHub, service: Service) -> None:
    service.faults.fail("/v1/leases", 500, times=4, after=True)  # stored, answers lost
    run = github.step.run(github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"))
    assert_rolled_back(run, github, service, "answered 500 while registering leases")
    assert github.writes() == [f"POST /app/installations/{github.installation.id}/access_tokens"]


def test_the_service_failing_before_it_stores_anything(github: GitHub, service: Service) -> None:
    """After a registration that may or may not have been stored, the rollback tells the
    service; "no such lease" is then the expected answer, not a failure to warn about."""
    service.faults.fail("/v1/leases", 500, times=4)  # a proxy's 500s: the service saw nothing
    run = github.step.run(github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"))
    assert run.returncode == 1
    (error,) = run.annotations("error")
    assert "answered 500 while registering leases" in error[1]
    warnings = [message for _, message in run.annotations("warning")]
    assert len(warnings) == 1
    assert warnings[0].startswith("Rolling back 2 minted key(s) because: ")
    assert service.faults.statuses("/v1/leases/retire") == [404]
    assert service.leases() == {}
    assert github.sandbox.environment_names(github.repo) == []
    assert run.env == {}


def test_a_rollback_the_service_cannot_take_is_warned_about(
    github: GitHub, service: Service
) -> None:
    """Unsure whether the leases were stored, any answer but "no such lease" is still a
    failure to tell the service: the leases may be live there."""
    service.faults.fail("/v1/leases", 500, times=4)
    service.faults.fail("/v1/leases/retire", 503, times=4)
    run = github.step.run(github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"))
    assert run.returncode == 1
    warnings = [message for _, message in run.annotations("warning")]
    assert any(
        w.startswith("Rollback could not tell the service: the lease service answered 503")
        for w in warnings
    ), warnings


def test_an_unwritable_github_env(github: GitHub, service: Service, tmp_path: Path) -> None:
    run = github.step.run(
        github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"),
        extra_env={"GITHUB_ENV": str(tmp_path / "gone" / "env")},
    )
    assert_rolled_back(run, github, service, "GITHUB_ENV: ")
    deletes = [call for call in github.writes() if call.startswith("DELETE")]
    assert deletes == [f"DELETE {ENV}"]  # its secrets with it


def test_a_cleanup_failure_warns_and_leaves_the_key_to_the_post_step(
    github: GitHub, service: Service, tmp_path: Path
) -> None:
    github.sandbox.inject_fault("DELETE", r"/secrets/API_TOKEN$", status=500, times=None)
    run = github.step.run(
        github.app_inputs(keys=KEYS, **{"repository-secrets": "true"}),
        extra_env={"GITHUB_ENV": str(tmp_path / "gone" / "env")},
    )
    assert run.returncode == 1
    (error,) = run.annotations("error")
    assert "GITHUB_ENV" in error[1]  # the cause, not the cleanup's trouble
    warnings = [message for _, message in run.annotations("warning")]
    assert any("Rollback could not retire API_TOKEN" in w for w in warnings)
    assert github.secret("SIGNING_SECRET") is None
    assert github.secret("API_TOKEN") is not None  # still there: the delete kept failing
    state = json.loads(run.state["leases"])
    assert [lease["key_name"] for lease in state["leases"]] == ["API_TOKEN"]
    stored = service.leases()
    assert stored["SIGNING_SECRET"].state is LeaseState.REVOKED
    assert stored["API_TOKEN"].state is LeaseState.REVOKING  # the service's worker takes over
    assert "500" in (stored["API_TOKEN"].last_error or "")
    # The post step tries again, and succeeds once GitHub does.
    github.sandbox.clear_faults()
    post = github.step.run(
        github.app_inputs(keys=KEYS, **{"repository-secrets": "true"}),
        extra_env=github.step.post_env(run),
        post=True,
    )
    assert post.returncode == 0
    assert "API_TOKEN: revoked and deleted its secret." in post.lines
    assert github.secret("API_TOKEN") is None
    assert service.leases()["API_TOKEN"].state is LeaseState.REVOKED
