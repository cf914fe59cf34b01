"""GitHub's refusals and hiccups (issue 3 item 10): 401/403/404/422 explained in terms of the
App's permissions and the step's inputs; 5xx and secondary rate limits retried, `Retry-After`
honoured (waits kept at a second); the workflow's GITHUB_TOKEN told it cannot write secrets."""

from __future__ import annotations

import time

from tests.action.conftest import GitHub

KEYS = "API_TOKEN: {provider: random}\n"
ENV_INPUTS = {"keys": KEYS, "environment": "ci"}


def failed(github: GitHub, inputs: dict[str, str]) -> str:
    run = github.step.run(inputs)
    assert run.returncode == 1, run.lines
    (error,) = run.annotations("error")
    assert error[0] == "runkeys: GitHub API error"
    assert run.env == {}
    return error[1]


def test_an_installation_without_a_permission_the_step_needs(github: GitHub) -> None:
    app = github.sandbox.add_app()
    installation = github.sandbox.install(
        app, [github.repo], permissions={"secrets": "write", "metadata": "read"}
    )
    inputs = {"app-id": str(app.id), "private-key": app.private_key_pem, **ENV_INPUTS}
    message = failed(github, inputs)
    assert "The permissions requested are not granted to this installation" in message
    assert "administration: write" in message
    assert "accept them on the installation" in message
    assert github.writes() == [f"POST /app/installations/{installation.id}/access_tokens"]


def test_an_app_not_installed_on_the_repository(github: GitHub) -> None:
    app = github.sandbox.add_app()
    inputs = {"app-id": str(app.id), "private-key": app.private_key_pem, **ENV_INPUTS}
    message = failed(github, inputs)
    assert "404" in message
    assert "install the GitHub App on this repository" in message


def test_a_private_key_that_is_not_the_apps(github: GitHub) -> None:
    other = github.sandbox.add_app()
    inputs = {"app-id": str(github.app.id), "private-key": other.private_key_pem, **ENV_INPUTS}
    message = failed(github, inputs)
    assert "401" in message
    assert "check `app-id` and `private-key`" in message


def test_the_workflow_token_is_told_it_cannot_write_secrets(github: GitHub) -> None:
    token = github.sandbox.workflow_token(github.repo)
    run = github.step.run(
        {"keys": KEYS, "repository-secrets": "true", "github-token": token},
    )
    assert run.returncode == 1
    (error,) = run.annotations("error")
    assert "403" in error[1]
    assert "GITHUB_TOKEN cannot write secrets" in error[1]
    assert "`app-id` and `private-key`" in error[1]
    assert run.masks == []  # refused while checking the scope: nothing was minted
    assert github.writes() == []
    assert token not in "\n".join(run.lines) + run.summary + run.stderr


def test_the_workflow_token_on_an_environment_rolls_back(github: GitHub) -> None:
    token = github.sandbox.workflow_token(github.repo)
    run = github.step.run({"github-token": token, **ENV_INPUTS})
    assert run.returncode == 1
    message = run.annotations("error")[0][1]
    assert "GITHUB_TOKEN cannot write secrets or create environments" in message
    assert "administration: write" in message
    assert github.sandbox.environment_names(github.repo) == []


def test_a_token_lacking_a_permission_names_it(github: GitHub) -> None:
    token = github.sandbox.add_token([github.repo], {"secrets": "read"})
    message = failed(github, {"keys": KEYS, "repository-secrets": "true", "github-token": token})
    assert "403 while writing secret API_TOKEN" in message
    assert "would need secrets: write on octo/app" in message
    assert github.secret("API_TOKEN") is None


def test_server_errors_are_retried_and_retry_after_is_honoured(github: GitHub) -> None:
    github.sandbox.inject_fault("PUT", r"/secrets/API_TOKEN$", status=503, retry_after=1)
    started = time.monotonic()
    run = github.step.run(github.app_inputs(**ENV_INPUTS))
    assert run.returncode == 0, run.lines
    assert time.monotonic() - started >= 1.0
    assert github.calls().count("PUT /repos/octo/app/environments/ci/secrets/API_TOKEN") == 2
    assert github.secret("API_TOKEN", "ci") == run.env["API_TOKEN"]


def test_secondary_rate_limits_are_waited_out(github: GitHub) -> None:
    github.sandbox.inject_fault("GET", r"/environments/ci$", status=403, retry_after=1)
    github.sandbox.inject_fault("PUT", r"/environments/ci$", status=429, retry_after=1)
    run = github.step.run(github.app_inputs(**ENV_INPUTS))
    assert run.returncode == 0, run.lines
    calls = github.calls()
    assert calls.count("GET /repos/octo/app/environments/ci") == 2
    assert calls.count("PUT /repos/octo/app/environments/ci") == 2


def test_a_rate_limit_that_lasts_is_explained(github: GitHub) -> None:
    github.sandbox.inject_fault("GET", r"/environments/ci$", status=403, retry_after=0, times=None)
    message = failed(github, github.app_inputs(**ENV_INPUTS))
    assert "403" in message
    assert "secondary rate limit" in message
