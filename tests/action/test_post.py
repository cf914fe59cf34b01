"""The post step (issue 3 item 9): a fresh process with the inputs, `STATE_*` and the job's
environment; retires `job` keys, tells the service, skips what expired, only ever warns."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from action_src.post import _revoke_one
from action_src.workflow import Workflow
from runkeys.leases import LeaseState, RetireOutcome
from tests.action.conftest import GitHub
from tests.action.harness import Run, Step
from tests.action.service import Service
from tests.unit.action.test_issuance import FakeRegistry, Flaky, lease_request

JOB_KEYS = (
    "SESSION_KEY: {provider: random, lifetime: job}\n"
    "SIGNING_SECRET: {provider: random, format: hex, lifetime: job}\n"
)
ENV = "/repos/octo/app/environments/ci-run-4242"


def main_then_post(github: GitHub, inputs: dict[str, str]) -> tuple[Run, Run]:
    main = github.step.run(github.app_inputs(**inputs))
    assert main.returncode == 0, main.lines
    github.sandbox.clear_requests()
    post = github.step.run(
        github.app_inputs(**inputs), extra_env=github.step.post_env(main), post=True
    )
    assert post.returncode == 0
    return main, post


def test_job_keys_are_retired_and_the_created_environment_removed(
    github: GitHub, service: Service
) -> None:
    main, post = main_then_post(github, {"keys": JOB_KEYS, "environment": "ci-run-{run_id}"})
    assert github.calls() == [
        "GET /repos/octo/app/installation",
        f"POST /app/installations/{github.installation.id}/access_tokens",
        f"GET {ENV}/secrets",  # only this step's secrets: they go with the environment
        f"DELETE {ENV}",
    ]
    assert github.sandbox.environment_names(github.repo) == []
    assert "SESSION_KEY: revoked; its secret went with the environment." in post.lines
    assert "Deleted environment ci-run-4242, which runkeys had created." in post.lines
    assert service.faults.statuses("/v1/leases/retire") == [200]
    stored = service.leases()
    assert sorted(stored) == ["SESSION_KEY", "SIGNING_SECRET"]
    for lease in stored.values():
        assert (lease.state, lease.retire_reason) == (
            LeaseState.REVOKED,
            "post-step: retired by the job",
        )
    assert post.annotations("warning") == []
    post.assert_nowhere(main.env.values(), except_job_files=False)


def test_an_environment_still_holding_run_keys_is_kept(github: GitHub) -> None:
    keys = JOB_KEYS + "API_TOKEN: {provider: random, lifetime: run}\n"
    main, post = main_then_post(github, {"keys": keys, "environment": "ci-run-{run_id}"})
    assert github.sandbox.secret_names(github.repo, "ci-run-4242") == ["API_TOKEN"]
    assert "Environment ci-run-4242 still holds secrets; it is kept." in post.lines
    assert github.secret("API_TOKEN", "ci-run-4242") == main.env["API_TOKEN"]


def test_job_keys_of_the_job_only_need_no_github(github: GitHub) -> None:
    main = github.step.run({"keys": JOB_KEYS})
    post = github.step.run({"keys": JOB_KEYS}, extra_env=github.step.post_env(main), post=True)
    assert post.returncode == 0
    assert post.lines == ["SESSION_KEY: revoked.", "SIGNING_SECRET: revoked."]
    assert github.calls() == []


def expire(main: Run) -> dict[str, str]:
    state = json.loads(main.state["leases"])
    for lease in state["leases"]:
        lease["expires_at"] = "2020-01-01T00:00:00+00:00"
    return {"STATE_leases": json.dumps(state)}


def test_expired_keys_are_left_to_the_service(github: GitHub, service: Service) -> None:
    inputs = github.app_inputs(keys=JOB_KEYS, **{"repository-secrets": "true"})
    main = github.step.run(inputs)
    github.sandbox.clear_requests()
    post = github.step.run(
        inputs, extra_env={**github.step.post_env(main), **expire(main)}, post=True
    )
    assert post.returncode == 0
    assert any("expired at 2020-01-01" in line for line in post.lines)
    assert github.writes() == []
    assert service.faults.statuses("/v1/leases/retire") == []
    assert {lease.state for lease in service.leases().values()} == {LeaseState.ACTIVE}


def test_expired_keys_are_still_retired_without_a_service(github: GitHub) -> None:
    inputs = github.app_inputs(keys=JOB_KEYS, **{"repository-secrets": "true"})
    main = github.step.run(inputs)
    post = github.step.run(
        inputs, extra_env={**github.step.post_env(main), **expire(main)}, post=True
    )
    assert "SESSION_KEY: revoked and deleted its secret." in post.lines
    assert github.sandbox.secret_names(github.repo) == []


def test_failures_only_warn_and_are_reported(github: GitHub, service: Service) -> None:
    """No newer run wrote these secrets, so the service lets the post step delete both. One
    delete fails after the report: a second report says so, and the service takes that
    secret over. (Repository secrets: in an environment the step created, they would go with
    it, not one by one.)"""
    inputs = github.app_inputs(keys=JOB_KEYS, **{"repository-secrets": "true"})
    main = github.step.run(inputs)
    github.sandbox.inject_fault("DELETE", r"/secrets/SESSION_KEY$", status=500, times=None)
    post = github.step.run(inputs, extra_env=github.step.post_env(main), post=True)
    assert post.returncode == 0
    (warning,) = post.annotations("warning")
    assert "Could not retire SESSION_KEY: it is revoked, but" in warning[1]
    assert "500 while deleting secret SESSION_KEY" in warning[1]
    assert "SIGNING_SECRET: revoked and deleted its secret." in post.lines
    assert github.sandbox.secret_names(github.repo) == ["SESSION_KEY"]
    assert service.faults.statuses("/v1/leases/retire") == [200, 200]
    stored = service.leases()
    assert stored["SIGNING_SECRET"].state is LeaseState.REVOKED
    failed = stored["SESSION_KEY"]
    assert (failed.state, failed.retire_reason) == (
        LeaseState.REVOKING,
        "post-step: could not delete its secret",
    )
    assert failed.last_error is not None
    assert "500" in failed.last_error


def test_a_service_that_is_down_only_warns(github: GitHub, service: Service) -> None:
    """Unasked, the service cannot say which secrets a newer run wrote: they are deleted by
    name, as without a service, and the warning says so."""
    inputs = github.app_inputs(keys=JOB_KEYS, environment="ci-run-{run_id}")
    main = github.step.run(inputs)
    service.faults.fail("/v1/leases/retire", 500, times=4)
    post = github.step.run(inputs, extra_env=github.step.post_env(main), post=True)
    assert post.returncode == 0
    (warning,) = post.annotations("warning")
    assert "Could not tell the runkeys service" in warning[1]
    assert "Its secrets are deleted by name" in warning[1]
    assert "SESSION_KEY: revoked; its secret went with the environment." in post.lines
    assert github.sandbox.environment_names(github.repo) == []
    # Never told, the service still holds them live: its worker retires them when the run ends.
    assert {lease.state for lease in service.leases().values()} == {LeaseState.ACTIVE}


@pytest.mark.parametrize(
    "state", ["", "not json", '{"version": 99, "leases": []}', '{"version": 1}']
)
def test_no_or_unreadable_state_never_fails_the_job(tmp_path: Path, state: str) -> None:
    post = Step(tmp_path).run({}, extra_env={"STATE_leases": state}, post=True)
    assert post.returncode == 0
    if state:
        (warning,) = post.annotations("warning")
        assert "STATE_leases" in warning[1]
    else:
        assert post.lines == ["runkeys post: nothing to retire."]


def test_the_value_for_revoking_comes_from_the_jobs_environment(tmp_path: Path) -> None:
    provider = Flaky()
    lease = lease_request("DEPLOY_TOKEN")
    with (tmp_path / "out").open("w") as out:
        request = _revoke_one(
            lease,
            environ={"DEPLOY_TOKEN": "the-value"},
            workflow=Workflow({}, out),
            registry=FakeRegistry(provider),
            connections={},
            store=None,
        )
    assert not isinstance(request, RetireOutcome)
    assert provider.revoked[0].value == "the-value"
    assert provider.revoked[0].reference == lease.reference


def test_a_secret_a_newer_attempt_wrote_is_kept(
    github: GitHub, service: Service, tmp_path: Path
) -> None:
    """Attempt 1 and its re-run (attempt 2) write the same repository secrets. When attempt 1's
    post step retires its keys, the service says attempt 2's live keys wrote them since: they
    stay, holding attempt 2's values."""
    inputs = github.app_inputs(keys=JOB_KEYS, **{"repository-secrets": "true"})
    first = github.step.run(inputs)
    assert first.returncode == 0, first.lines
    rerun = Step(tmp_path / "rerun", run_id=4242)
    for name in ("GITHUB_API_URL", "INPUT_SERVICE-URL", "INPUT_AUDIENCE"):
        rerun.base_env[name] = github.step.base_env[name]
    rerun.base_env["GITHUB_RUN_ATTEMPT"] = "2"
    claims = replace(github.sandbox.run_claims(github.repo, 4242), run_attempt=2)
    rerun.base_env.update(github.sandbox.runner_oidc_env(claims))
    second = rerun.run(inputs)
    assert second.returncode == 0, second.lines
    post = github.step.run(inputs, extra_env=github.step.post_env(first), post=True)
    assert post.returncode == 0
    for name in ("SESSION_KEY", "SIGNING_SECRET"):
        kept = f"{name}: revoked; its secret was kept: a newer run's key wrote it since."
        assert kept in post.lines
        assert github.secret(name) == second.env[name]
    by_attempt = {(lease.run_attempt, lease.key_name): lease for lease in service.all_leases()}
    assert by_attempt[(1, "SESSION_KEY")].state is LeaseState.REVOKED
    assert by_attempt[(2, "SESSION_KEY")].state is LeaseState.ACTIVE
    assert by_attempt[(1, "SIGNING_SECRET")].state is LeaseState.REVOKED
    assert by_attempt[(2, "SIGNING_SECRET")].state is LeaseState.ACTIVE
