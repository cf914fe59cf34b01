"""A run's logs in the stand-in, as GitHub serves them
(https://docs.github.com/rest/actions/workflow-runs#download-workflow-run-logs): a 302 to a
short-lived URL of a zip of step and job logs, every line stamped; 404 without logs, 410 once
deleted; DELETE needs Actions: write. Set by a test (`Sandbox.set_run_logs`) or over the
control API (`POST /_sandbox/runs/{id}/logs`)."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import requests

from tests.almost import last_char_changed
from tests.sandbox.conftest import Seeded

STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z ")


def logs_path(run_id: int, attempt: int | None = None) -> str:
    """The run's logs (the latest attempt's), or one attempt's."""
    run = f"/repos/octo/app/actions/runs/{run_id}"
    return f"{run}/logs" if attempt is None else f"{run}/attempts/{attempt}/logs"


def printed(seeded: Seeded, path: str, token: str) -> list[str]:
    """What the archive behind `path`'s redirect holds in its one step log, unstamped."""
    answer = seeded.api("GET", path, token, allow_redirects=False)
    assert answer.status_code == 302, answer.text
    data = requests.get(answer.headers["Location"], timeout=10).content
    archive = zipfile.ZipFile(io.BytesIO(data))
    return [STAMPED.sub("", line) for line in archive.read("build/1_Run.txt").decode().splitlines()]


def test_the_logs_are_a_redirect_to_a_zip_laid_out_as_githubs(seeded: Seeded) -> None:
    run = seeded.sb.add_workflow_run(seeded.repo, status="completed", conclusion="success")
    seeded.sb.set_run_logs(
        seeded.repo,
        run.id,
        {"build": [("Set up job", "one\ntwo"), ("Run make", "three")], "test/unit": [("Run", "x")]},
    )
    token = seeded.token(permissions={"actions": "read"})
    answer = seeded.api("GET", logs_path(run.id), token, allow_redirects=False)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    # Signed by itself: fetched with no credential, as GitHub's download URL is.
    archive = zipfile.ZipFile(io.BytesIO(requests.get(location, timeout=10).content))
    assert sorted(archive.namelist()) == [
        "1_build.txt",
        "2_test_unit.txt",
        "build/1_Set up job.txt",
        "build/2_Run make.txt",
        "test_unit/1_Run.txt",
    ]
    step = archive.read("build/1_Set up job.txt").decode().splitlines()
    assert [STAMPED.sub("", line) for line in step] == ["one", "two"]
    assert all(STAMPED.match(line) for line in step)
    job = archive.read("1_build.txt").decode().splitlines()
    assert [STAMPED.sub("", line) for line in job] == ["one", "two", "three"]
    downloads = [r for r in seeded.sb.requests if r.path.startswith("/_sandbox/run-logs/")]
    assert [r.caller for r in downloads] == ["anonymous"]
    assert (
        downloads[0].response_body == f"<{len(requests.get(location, timeout=10).content)} bytes>"
    )


def test_no_logs_is_404_deleted_is_410_and_deleting_needs_actions_write(seeded: Seeded) -> None:
    run = seeded.sb.add_workflow_run(seeded.repo, status="completed", conclusion="success")
    reader = seeded.token(permissions={"actions": "read"})
    assert seeded.api("GET", logs_path(run.id), reader).status_code == 404
    seeded.sb.set_run_logs(seeded.repo, run.id, {"build": [("Run", "ok")]})
    refused = seeded.api("DELETE", logs_path(run.id), reader)
    assert refused.status_code == 403
    assert refused.json()["message"] == "Resource not accessible by integration"
    granted = {**seeded.installation.permissions, "actions": "write"}
    seeded.sb.update_installation(seeded.installation, permissions=granted)
    writer = seeded.token(permissions={"actions": "write"})
    answer = seeded.api("GET", logs_path(run.id), reader, allow_redirects=False)
    location = answer.headers["Location"]
    assert seeded.api("DELETE", logs_path(run.id), writer).status_code == 204
    assert seeded.api("GET", logs_path(run.id), reader).status_code == 410
    assert seeded.api("DELETE", logs_path(run.id), writer).status_code == 410
    assert requests.get(location, timeout=10).status_code == 404  # the archive went too


def test_a_download_url_expires_after_a_minute_and_is_not_guessable(seeded: Seeded) -> None:
    run = seeded.sb.add_workflow_run(seeded.repo, status="completed", conclusion="success")
    seeded.sb.set_run_logs(seeded.repo, run.id, {"build": [("Run", "ok")]})
    token = seeded.token(permissions={"actions": "read"})
    location = seeded.api("GET", logs_path(run.id), token, allow_redirects=False).headers[
        "Location"
    ]
    assert requests.get(location, timeout=10).status_code == 200
    assert requests.get(last_char_changed(location), timeout=10).status_code == 404
    seeded.sb.clock.offset += 61
    assert requests.get(location, timeout=10).status_code == 404


def test_another_repositorys_token_gets_no_logs(seeded: Seeded) -> None:
    other = seeded.sb.add_repository("octo/other")
    run = seeded.sb.add_workflow_run(seeded.repo, status="completed", conclusion="success")
    seeded.sb.set_run_logs(seeded.repo, run.id, {"build": [("Run", "ok")]})
    elsewhere = seeded.sb.add_token([other], {"actions": "write"})
    assert seeded.api("GET", logs_path(run.id), elsewhere).status_code == 404
    assert seeded.api("GET", logs_path(run.id, 1), elsewhere).status_code == 404
    assert seeded.api("DELETE", logs_path(run.id), elsewhere).status_code == 404


def test_the_control_api_sets_logs_and_refuses_a_bad_body(seeded: Seeded) -> None:
    run = seeded.sb.add_workflow_run(seeded.repo)
    url = f"{seeded.sb.url}/_sandbox/runs/{run.id}/logs"
    body = {"jobs": {"build": [{"step": "Run", "log": "hello"}]}}
    answer = requests.post(url, json=body, timeout=10)
    assert answer.json() == {"run_id": run.id, "jobs": 1, "steps": 1}
    assert run.logs[1].jobs == {"build": [("Run", "hello")]}
    seeded.sb.set_run_status(seeded.repo, run.id, "in_progress", run_attempt=2)
    again = {**body, "run_attempt": 1, "jobs": {"build": [{"step": "Run", "log": "again"}]}}
    assert requests.post(url, json=again, timeout=10).status_code == 200
    assert run.logs[1].jobs == {"build": [("Run", "again")]}
    assert 2 not in run.logs
    bad_bodies: list[dict[str, Any]] = [
        {},
        {"jobs": []},
        {"jobs": {"build": [{"step": "Run"}]}},
        {"jobs": {"build": [{"step": "", "log": "x"}]}},
        {"jobs": {"build": "x"}},
        {**body, "run_attempt": 3},  # no such attempt (yet)
        {**body, "run_attempt": 0},
        {**body, "run_attempt": "1"},
        {**body, "run_attempt": True},
    ]
    for bad in bad_bodies:
        refused = requests.post(url, json=bad, timeout=10)
        assert refused.status_code == 400, bad
        assert refused.json()["message"]
    missing = requests.post(f"{seeded.sb.url}/_sandbox/runs/99/logs", json=body, timeout=10)
    assert missing.status_code == 404


def test_each_attempt_keeps_its_own_logs_and_the_runs_are_the_latest_attempts(
    seeded: Seeded,
) -> None:
    """GET …/attempts/{n}/logs serves attempt n's archive
    (https://docs.github.com/rest/actions/workflow-runs#download-workflow-run-attempt-logs);
    the run's own GET, the latest attempt's: nothing while a re-run has printed nothing yet."""
    run = seeded.sb.add_workflow_run(seeded.repo, status="completed", conclusion="failure")
    seeded.sb.set_run_logs(seeded.repo, run.id, {"build": [("Run", "first")]})
    token = seeded.token(permissions={"actions": "read"})
    assert printed(seeded, logs_path(run.id), token) == ["first"]
    seeded.sb.set_run_status(seeded.repo, run.id, "in_progress", run_attempt=2)
    assert seeded.api("GET", logs_path(run.id), token).status_code == 404
    assert printed(seeded, logs_path(run.id, 1), token) == ["first"]
    seeded.sb.set_run_logs(seeded.repo, run.id, {"build": [("Run", "second")]})
    assert printed(seeded, logs_path(run.id), token) == ["second"]
    assert printed(seeded, logs_path(run.id, 2), token) == ["second"]
    assert printed(seeded, logs_path(run.id, 1), token) == ["first"]
    for missing in (3, 0):  # no such attempt
        assert seeded.api("GET", logs_path(run.id, missing), token).status_code == 404
    no_actions = seeded.token(permissions={"secrets": "write"})
    refused = seeded.api("GET", logs_path(run.id, 1), no_actions)
    assert refused.status_code == 403
    assert refused.json()["message"] == "Resource not accessible by integration"


def test_deleting_a_runs_logs_deletes_every_attempts(seeded: Seeded) -> None:
    run = seeded.sb.add_workflow_run(seeded.repo, status="completed", conclusion="failure")
    seeded.sb.set_run_logs(seeded.repo, run.id, {"build": [("Run", "first")]})
    seeded.sb.set_run_status(seeded.repo, run.id, "completed", "success", run_attempt=2)
    seeded.sb.set_run_logs(seeded.repo, run.id, {"build": [("Run", "second")]}, run_attempt=2)
    reader = seeded.token(permissions={"actions": "read"})
    first = seeded.api("GET", logs_path(run.id, 1), reader, allow_redirects=False)
    granted = {**seeded.installation.permissions, "actions": "write"}
    seeded.sb.update_installation(seeded.installation, permissions=granted)
    writer = seeded.token(permissions={"actions": "write"})
    assert seeded.api("DELETE", logs_path(run.id), writer).status_code == 204
    statuses = [seeded.api("GET", logs_path(run.id, n), reader).status_code for n in (1, 2)]
    assert statuses == [410, 410]
    assert seeded.api("GET", logs_path(run.id), reader).status_code == 410
    assert requests.get(first.headers["Location"], timeout=10).status_code == 404
    # GitHub has no DELETE of one attempt's logs.
    assert seeded.api("DELETE", logs_path(run.id, 1), writer).status_code == 404
