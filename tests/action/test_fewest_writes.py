"""The action's own cleanup spends GitHub's write budget as the worker does (issue 16): ten keys
whose secrets are in the environment the step created cost ten revokes at their issuer and one
DELETE of the environment, in the post step (after one read of its secret names) and in a
rollback; no secret is deleted alone. Counted from the sandbox's and the issuer's request logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.action.conftest import GitHub
from tests.providers.issuer_server import ACCOUNT, Issuer

ENV = "/repos/octo/app/environments/ci-run-4242"
KEY = (
    "{provider: http, connection: issuer, lifetime: job, "
    'mint: {path: /v1/tokens, body: {name: "{label}"}}, '
    "response: {value: data.token, reference: data.id}, "
    'revoke: {path: "/v1/tokens/{reference}"}}'
)
KEYS = "".join(f"KEY_{i}: {KEY}\n" for i in range(10))


@pytest.fixture
def issuer(github: GitHub) -> Iterator[Issuer]:
    served = Issuer()
    url = served.start()
    user, password = ACCOUNT
    github.step.base_env["RUNKEYS_CONNECTION_ISSUER"] = (
        url.replace("http://", f"http://{user}:{password}@") + "/api/"
    )
    yield served
    served.stop()


def revokes(issuer: Issuer) -> list[str]:
    return sorted(target for method, target in issuer.requests if method == "DELETE")


def test_the_post_step_deletes_the_environment_it_created_once(
    github: GitHub, issuer: Issuer
) -> None:
    inputs = github.app_inputs(keys=KEYS, environment="ci-run-{run_id}")
    main = github.step.run(inputs)
    assert main.returncode == 0, main.lines
    assert len(github.sandbox.secret_names(github.repo, "ci-run-4242")) == 10
    minted = sorted(f"/api/v1/tokens/{token.id}" for token in issuer.live())
    assert len(minted) == 10
    github.sandbox.clear_requests()
    post = github.step.run(inputs, extra_env=github.step.post_env(main), post=True)
    assert post.returncode == 0
    assert revokes(issuer) == minted  # each once
    assert issuer.live() == []
    assert github.calls() == [
        "GET /repos/octo/app/installation",
        f"POST /app/installations/{github.installation.id}/access_tokens",
        f"GET {ENV}/secrets",
        f"DELETE {ENV}",
    ]
    assert github.sandbox.environment_names(github.repo) == []


def test_a_rollback_deletes_the_environment_it_created_once(
    github: GitHub, issuer: Issuer, tmp_path: Path
) -> None:
    """The secrets are written, then the job's variables cannot be: everything is undone."""
    run = github.step.run(
        github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"),
        extra_env={"GITHUB_ENV": str(tmp_path / "gone" / "env")},
    )
    assert run.returncode == 1
    assert github.writes().count(f"PUT {ENV}") == 1
    assert sum(w.startswith(f"PUT {ENV}/secrets/") for w in github.writes()) == 10
    assert [w for w in github.writes() if w.startswith("DELETE")] == [f"DELETE {ENV}"]
    minted = [target for method, target in issuer.requests if method == "POST"]
    assert len(minted) == 10
    assert len(set(revokes(issuer))) == len(revokes(issuer)) == 10
    assert issuer.live() == []
    assert github.sandbox.environment_names(github.repo) == []


def test_a_rollback_whose_environment_delete_fails_deletes_each_secret(
    github: GitHub, issuer: Issuer, tmp_path: Path
) -> None:
    """The environment stays (its DELETE failed): the secrets of the revoked keys go one by one,
    and the post step is left the environment to try again."""
    github.sandbox.inject_fault("DELETE", r"/environments/ci-run-4242$", status=500, times=None)
    run = github.step.run(
        github.app_inputs(keys=KEYS, environment="ci-run-{run_id}"),
        extra_env={"GITHUB_ENV": str(tmp_path / "gone" / "env")},
    )
    assert run.returncode == 1
    deletes = [w for w in github.writes() if w.startswith("DELETE")]
    tries = deletes.count(f"DELETE {ENV}")  # the GitHub client's own retries of the 500
    assert tries >= 1
    assert deletes[:tries] == [f"DELETE {ENV}"] * tries
    alone = sorted(f"DELETE {ENV}/secrets/KEY_{i}" for i in range(10))
    assert sorted(deletes[tries:]) == alone
    assert github.sandbox.secret_names(github.repo, "ci-run-4242") == []
    assert len(revokes(issuer)) == 10
    assert issuer.live() == []
