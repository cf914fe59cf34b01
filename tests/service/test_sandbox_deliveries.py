"""`runkeys sandbox complete-run` and `close-pr` against the service over real HTTP: the
stand-in's control API ends the run or closes the pull request and delivers what GitHub would,
signed with the App's webhook secret, and the service believes it only when that secret is its
own."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from handler.app import create_app
from handler.ledger import Ledger
from handler.ledger.completions import apply_completions
from runkeys.leases import Lifetime
from runkeys_sandbox.launch import ThreadServer
from tests.service.conftest import GitHub
from tests.service.kit import Clock, identity, put, run_cli, states


def _pr_run(github: GitHub, number: int) -> int:
    run = github.sandbox.add_workflow_run(
        github.repo, event="pull_request", head_branch=f"pr-{number}", pull_requests=[number]
    )
    return run.id


def _leases(ledger: Ledger, github: GitHub, run_id: int, number: int) -> tuple[str, str]:
    """A `run` and a `pr` lease of a job of `run_id`, a run of pull request `number`."""
    who = identity(
        github.repo.full_name, github.repo.id, run_id=run_id, ref=f"refs/pull/{number}/merge"
    )
    run_lease, pr_lease = put(
        ledger,
        who,
        github.lease(key_name="RUN_TOKEN"),
        github.lease(key_name="PR_TOKEN", lifetime=Lifetime.PR),
        installation_id=github.installation.id,
    )
    return run_lease, pr_lease


def _apply(ledger: Ledger) -> None:
    """What the worker does first: a recorded completion becomes queued leases."""
    with ledger.begin() as conn:
        apply_completions(conn)


def _cli_env(github: GitHub, monkeypatch: pytest.MonkeyPatch, run_id: int) -> None:
    """What `. sandbox.env` leaves in the shell that the commands read."""
    monkeypatch.setenv("GITHUB_API_URL", github.sandbox.url)
    monkeypatch.setenv("GITHUB_RUN_ID", str(run_id))


def test_complete_run_delivers_a_signed_completion_the_service_acts_on(
    served: str,
    github: GitHub,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_id = _pr_run(github, 42)
    run_lease, pr_lease = _leases(ledger, github, run_id, 42)
    _cli_env(github, monkeypatch, run_id)
    code, out, err = run_cli(capsys, "sandbox", "complete-run", "--conclusion", "failure")
    assert code == 0, err
    assert f"Run {run_id} of {github.repo.full_name} completed (failure)." in out
    assert f"Delivered workflow_run completed to {served}/webhook" in out
    assert 'the service answered 200 {"outcome": "queued", "queued": 1}' in out
    # The worker's first step queues the run's lease; the pull request's waits for its close.
    _apply(ledger)
    assert states(ledger, [run_lease, pr_lease]) == {run_lease: "revoking", pr_lease: "active"}
    # GitHub's own view of the run agrees with what was delivered.
    token = github.sandbox.workflow_token(github.repo)
    got = requests.get(
        f"{github.sandbox.url}/repos/{github.repo.full_name}/actions/runs/{run_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    assert (got["status"], got["conclusion"]) == ("completed", "failure")
    # A run ends once: a second completion is refused, and nothing is delivered again.
    code, _, err = run_cli(capsys, "sandbox", "complete-run")
    assert code == 1
    assert "completed already" in err


def test_close_pr_retires_that_pull_requests_leases_only(
    served: str,
    github: GitHub,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    closing, other = _pr_run(github, 42), _pr_run(github, 43)
    run_lease, pr_lease = _leases(ledger, github, closing, 42)
    _, other_pr_lease = _leases(ledger, github, other, 43)
    _cli_env(github, monkeypatch, closing)
    # The session's stand-in has other repositories with a pull request #42: name this one.
    where = ("--repository", github.repo.full_name)
    code, out, err = run_cli(capsys, "sandbox", "close-pr", "42", "--merged", *where)
    assert code == 0, err
    assert f"Pull request #42 of {github.repo.full_name} merged." in out
    assert f"Delivered pull_request closed to {served}/webhook" in out
    assert '"queued": 1' in out
    _apply(ledger)
    assert states(ledger, [run_lease, pr_lease, other_pr_lease]) == {
        run_lease: "active",
        pr_lease: "revoking",
        other_pr_lease: "active",
    }
    # Unnamed, a pull request is looked for in the runs: none, or several repositories', is
    # said, and nothing delivered.
    code, out, err = run_cli(capsys, "sandbox", "close-pr", "98765")
    assert code == 1
    assert "pull request #98765: no run names it; say which repository" in err
    only_here = 100_000 + github.repo.id % 100_000  # the session's repositories' ids differ
    _pr_run(github, only_here)
    code, out, err = run_cli(capsys, "sandbox", "close-pr", str(only_here))
    assert code == 0, err
    assert "Delivered pull_request closed" in out


def test_a_delivery_signed_with_another_secret_is_refused(  # noqa: PLR0917
    github: GitHub,
    ledger: Ledger,
    environ: dict[str, str],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The stand-in signs with its App's secret; a service holding another refuses it all."""
    other = create_app({**environ, "RUNKEYS_WEBHOOK_SECRET": "not the App's secret"}, clock=clock)
    server = ThreadServer(other)
    github.sandbox.webhook_url = f"{server.url}/webhook"
    try:
        run_id = _pr_run(github, 42)
        run_lease, pr_lease = _leases(ledger, github, run_id, 42)
        _cli_env(github, monkeypatch, run_id)
        code, out, _ = run_cli(capsys, "sandbox", "complete-run")
        assert code == 1
        assert "the service answered 401" in out
        code, out, _ = run_cli(
            capsys, "sandbox", "close-pr", "42", "--repository", github.repo.full_name
        )
        assert code == 1
        assert "the service answered 401" in out
        _apply(ledger)
        assert states(ledger, [run_lease, pr_lease]) == {run_lease: "active", pr_lease: "active"}
        assert github.app.webhook_secret not in out
    finally:
        github.sandbox.webhook_url = None
        server.stop()
        other.extensions["runkeys"].close()


def test_without_a_webhook_url_nothing_is_sent(
    github: GitHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = _pr_run(github, 42)
    _cli_env(github, monkeypatch, run_id)
    code, out, _ = run_cli(capsys, "sandbox", "complete-run")
    assert code == 0
    assert "Nothing delivered: no webhook URL (runkeys sandbox --webhook-url)." in out


def test_without_the_sandbox_environment_the_commands_say_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_API_URL", raising=False)
    code, _, err = run_cli(capsys, "sandbox", "complete-run", "--run", "5")
    assert code == 1
    assert "GITHUB_API_URL: is not set" in err
    assert ". ./FILE" in err


def test_a_step_needs_the_sandbox_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.yml"
    keys.write_text("TOKEN:\n  provider: random\n  lifetime: run\n")
    for name in ("GITHUB_API_URL", "ACTIONS_ID_TOKEN_REQUEST_URL", "RUNKEYS_APP_ID"):
        monkeypatch.delenv(name, raising=False)
    argv = ("sandbox", "--keys", str(keys), "--service-url", "http://127.0.0.1:9")
    code, out, err = run_cli(capsys, *argv)
    assert code == 1
    assert "GITHUB_API_URL: is not set" in err
    assert "source it (. ./FILE) first" in err
    assert out == ""
