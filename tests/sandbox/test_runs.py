"""Workflow runs: state a test sets, PyGithub's get/list, filters, attempts, pagination."""

from __future__ import annotations

import pytest

from tests.sandbox.conftest import Seeded


def test_get_workflow_run_follows_the_state_a_test_sets(seeded: Seeded) -> None:
    run = seeded.sb.add_workflow_run(
        seeded.repo,
        status="queued",
        event="pull_request",
        head_branch="feature",
        pull_requests=[12],
    )
    assert run.id > 10**10  # run ids are large on GitHub
    repo = seeded.github().get_repo("octo/app")
    fetched = repo.get_workflow_run(run.id)
    assert (fetched.status, fetched.run_attempt) == ("queued", 1)
    assert fetched.raw_data["conclusion"] is None
    assert [pr.number for pr in fetched.pull_requests] == [12]
    assert fetched.head_branch == "feature"
    seeded.sb.set_run_status(seeded.repo, run.id, "completed", "success")
    again = repo.get_workflow_run(run.id)
    assert (again.status, again.conclusion) == ("completed", "success")


def test_reruns_are_new_attempts_of_the_same_run(seeded: Seeded) -> None:
    token = seeded.token()
    run = seeded.sb.add_workflow_run(
        seeded.repo, run_id=30433642, status="completed", conclusion="failure"
    )
    seeded.sb.set_run_status(seeded.repo, run.id, "in_progress", run_attempt=2)
    latest = seeded.api("GET", f"/repos/octo/app/actions/runs/{run.id}", token).json()
    assert (latest["id"], latest["run_attempt"], latest["status"]) == (30433642, 2, "in_progress")
    assert latest["previous_attempt_url"].endswith(f"/actions/runs/{run.id}/attempts/1")
    first = seeded.api("GET", f"/repos/octo/app/actions/runs/{run.id}/attempts/1", token).json()
    assert (first["run_attempt"], first["conclusion"]) == (1, "failure")
    assert (
        seeded.api("GET", f"/repos/octo/app/actions/runs/{run.id}/attempts/3", token).status_code
        == 404
    )
    with pytest.raises(ValueError, match="next attempt"):
        seeded.sb.set_run_status(seeded.repo, run.id, "queued", run_attempt=5)


def test_a_run_added_at_a_later_attempt_has_its_history(seeded: Seeded) -> None:
    run = seeded.sb.add_workflow_run(seeded.repo, run_attempt=3)
    assert sorted(run.attempts) == [1, 2, 3]
    fetched = seeded.github().get_repo("octo/app").get_workflow_run(run.id)
    assert fetched.run_attempt == 3


def test_list_filters_and_order(seeded: Seeded) -> None:
    sb = seeded.sb
    push = sb.add_workflow_run(
        seeded.repo, status="completed", conclusion="success", head_sha="a" * 40
    )
    pr = sb.add_workflow_run(
        seeded.repo, event="pull_request", head_branch="feature", pull_requests=[3]
    )
    queued = sb.add_workflow_run(seeded.repo, status="queued")
    repo = seeded.github().get_repo("octo/app")
    assert [r.id for r in repo.get_workflow_runs()] == [queued.id, pr.id, push.id]  # newest first
    assert [r.id for r in repo.get_workflow_runs(event="pull_request")] == [pr.id]
    by_branch = repo.get_workflow_runs(branch="feature")  # type: ignore[arg-type]  # str is fine
    assert [r.id for r in by_branch] == [pr.id]
    assert [r.id for r in repo.get_workflow_runs(status="success")] == [push.id]  # a conclusion
    assert [r.id for r in repo.get_workflow_runs(status="queued")] == [queued.id]
    assert [r.id for r in repo.get_workflow_runs(head_sha="a" * 40)] == [push.id]
    listed = seeded.api(
        "GET", "/repos/octo/app/actions/runs?exclude_pull_requests=true", seeded.token()
    )
    assert all(run["pull_requests"] == [] for run in listed.json()["workflow_runs"])


def test_list_pagination(seeded: Seeded) -> None:
    runs = [seeded.sb.add_workflow_run(seeded.repo) for _ in range(5)]
    token = seeded.token()
    page = seeded.api("GET", "/repos/octo/app/actions/runs?per_page=2&page=3", token)
    assert page.json()["total_count"] == 5
    assert [r["id"] for r in page.json()["workflow_runs"]] == [runs[0].id]
    assert 'rel="first"' in page.headers["Link"]
    client = seeded.github(token, per_page=2)
    assert len(list(client.get_repo("octo/app").get_workflow_runs())) == 5


def test_missing_runs_and_bad_states(seeded: Seeded) -> None:
    token = seeded.token()
    assert seeded.api("GET", "/repos/octo/app/actions/runs/1", token).status_code == 404
    assert seeded.api("GET", "/repos/octo/app/actions/runs/abc", token).status_code == 404
    with pytest.raises(ValueError, match="conclusion"):
        seeded.sb.add_workflow_run(seeded.repo, status="completed")
    with pytest.raises(ValueError, match="status"):
        seeded.sb.add_workflow_run(seeded.repo, status="done")
    with pytest.raises(ValueError, match="only a completed run"):
        seeded.sb.add_workflow_run(seeded.repo, status="queued", conclusion="success")


def test_runs_need_actions_read(seeded: Seeded) -> None:
    run = seeded.sb.add_workflow_run(seeded.repo)
    token = seeded.token(permissions={"secrets": "write"})
    assert seeded.api("GET", f"/repos/octo/app/actions/runs/{run.id}", token).status_code == 403
