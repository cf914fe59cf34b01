"""Issue 18, item 2: a completed run's logs are scanned for its keys. The action's entry point
mints a `random` token and a `postgres` role through the real service; the run's logs, served by
the stand-in as GitHub serves them, hold the token base64-encoded and the role's password alone
(as a log does where masking was not told of them: tests/e2e/test_log_scan.py has the masked
case). The worker finds both with job, step and line, retires the keys, and deletes the logs
when configured; a clean run finds nothing; no value reaches the ledger or the service's log."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from handler.app import create_app
from handler.ledger import tables
from handler.ledger.history import history
from handler.ledger.leases import LeaseFilter, find
from handler.worker import RevocationWorker
from runkeys.leases import LeaseState
from runkeys_sandbox.launch import ThreadServer
from tests.action.harness import Run, Step
from tests.encoded_forms import encoded_forms
from tests.service import kit
from tests.service.attack_kit import BACKENDS, connections, ledger
from tests.service.conftest import GitHub, make_environ
from tests.service.kit import AUDIENCE, Clock

KEYS = (
    "DATABASE_URL: {provider: postgres, connection: ci_db, ttl: 30m}\n"
    "API_TOKEN: {provider: random, ttl: 30m}\n"
)


@dataclass
class Minted:
    run: Run
    run_id: int
    values: dict[str, str]  # variable → value: the keys and the password part
    leases: dict[str, str]  # key name → lease id


def service_with(github: GitHub, tmp_path: Path, clock: Clock, **settings: str) -> Flask:
    environ = make_environ(github.sandbox, github.app, f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    return create_app(environ | connections() | settings, clock=clock)


@pytest.fixture
def deleting(github: GitHub, tmp_path: Path, clock: Clock) -> Iterator[Flask]:
    made = service_with(github, tmp_path, clock, RUNKEYS_DELETE_LEAKED_LOGS="true")
    yield made
    made.extensions["runkeys"].close()


def mint(github: GitHub, service: Flask, tmp_path: Path, run_id: int | None = None) -> Minted:
    """The action's keys in a new run, or in the latest attempt of `run_id` (a re-run)."""
    claims = github.claims(run_id)
    server = ThreadServer(service)
    folder = tmp_path / f"step-{claims.run_id}-{claims.run_attempt}"
    step = Step(folder, repository=github.repo.full_name, run_id=claims.run_id)
    step.base_env.update(github.sandbox.runner_oidc_env(claims))
    step.base_env["GITHUB_REPOSITORY_ID"] = str(github.repo.id)
    try:
        run = step.run(
            {"keys": KEYS, "service-url": server.url, "audience": AUDIENCE},
            extra_env=connections(),
        )
    finally:
        server.stop()
    assert run.returncode == 0, [*run.lines, run.stderr]
    names = ("DATABASE_URL", "DATABASE_URL_PASSWORD", "API_TOKEN")
    values = {name: run.env[name] for name in names}
    leases = {item["name"]: item["lease_id"] for item in run.keys_json()}
    return Minted(run, claims.run_id, values, leases)


def complete(github: GitHub, service: Flask, minted: Minted, attempt: int = 1) -> None:
    payload = kit.workflow_run_completed(
        github.repo.id, github.repo.full_name, minted.run_id, attempt, github.installation.id
    )
    server = ThreadServer(service)
    try:
        answer = github.sandbox.deliver(
            f"{server.url}/webhook", "workflow_run", payload, app=github.app
        )
    finally:
        server.stop()
    assert answer.status_code == 200, answer.text
    RevocationWorker(service.extensions["runkeys"]).drain()


def events(service: Flask, lease_id: str) -> list[tuple[str, str, str]]:
    with ledger(service).begin() as conn:
        return [(e.actor, e.action, e.detail) for e in history(conn, lease_id)]


def scans(service: Flask) -> list[tuple[str, int, str | None]]:
    with ledger(service).begin() as conn:
        rows = conn.execute(select(tables.log_scans)).all()
    return [(row.state, row.findings, row.note) for row in rows]


def leaked_forms(text: str | bytes, values: list[str]) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode()
    return sorted({f for v in values for f in encoded_forms(v) if f.encode() in data})


def logs_status(github: GitHub, run_id: int, attempt: int | None = None) -> int:
    """GitHub's answer to a GET of the run's logs (the latest attempt's), or of one attempt's."""
    token = github.sandbox.add_token([github.repo], {"actions": "read"})
    run = f"{github.sandbox.url}/repos/{github.repo.full_name}/actions/runs/{run_id}"
    url = f"{run}/logs" if attempt is None else f"{run}/attempts/{attempt}/logs"
    answer = requests.get(
        url, headers={"Authorization": f"token {token}"}, allow_redirects=False, timeout=10
    )
    return answer.status_code


def test_a_key_printed_base64_and_a_password_printed_alone_are_found_and_retired(
    github: GitHub,
    deleting: Flask,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    github.sandbox.update_installation(
        github.installation, permissions={**github.installation.permissions, "actions": "write"}
    )
    minted = mint(github, deleting, tmp_path)
    token, password = minted.values["API_TOKEN"], minted.values["DATABASE_URL_PASSWORD"]
    printed = base64.b64encode(f"token={token}".encode()).decode()
    tests = f"collecting\n{printed}\nconnecting as ***\nPGPASSWORD was {password}\n"
    github.sandbox.set_run_logs(
        github.repo,
        minted.run_id,
        {"e2e": [("Set up job", "Runner"), ("Keys", minted.run.logged()), ("Run tests", tests)]},
    )
    assert logs_status(github, minted.run_id) == 302
    complete(github, deleting, minted)

    token_events = events(deleting, minted.leases["API_TOKEN"])
    db_events = events(deleting, minted.leases["DATABASE_URL"])
    assert (
        "log-scan",
        "leaked_in_logs",
        f"API_TOKEN (its value, base64) in the logs of run {minted.run_id} attempt 1: "
        "job 'e2e', step 'Run tests', line 2",
    ) in token_events
    assert (
        "log-scan",
        "leaked_in_logs",
        f"DATABASE_URL (its part PASSWORD, as is) in the logs of run {minted.run_id} attempt 1: "
        "job 'e2e', step 'Run tests', line 4",
    ) in db_events
    # Each key found once: not again in the job's own log, which repeats its steps.
    assert len([e for e in token_events if e[1] == "leaked_in_logs"]) == 1
    with ledger(deleting).begin() as conn:
        leases = {
            lease.key_name: lease
            for lease in find(conn, LeaseFilter(repository=str(github.repo.id)))
        }
    for lease in leases.values():
        assert lease.state == LeaseState.REVOKED
        assert lease.retire_reason is not None
        assert lease.retire_reason.startswith("leaked_in_logs: found in the logs of run ")
    assert not BACKENDS["postgres"].exists(leases["DATABASE_URL"].label or "")
    assert ("log-scan", "logs_deleted") in [(a, b) for a, b, _ in token_events]
    assert logs_status(github, minted.run_id) == 410
    ((state, findings, note),) = scans(deleting)
    assert (state, findings) == ("done", 2)
    assert note is not None
    assert "the logs were deleted" in note
    values = list(minted.values.values())
    assert leaked_forms((tmp_path / "ledger.sqlite3").read_bytes(), values) == []
    assert leaked_forms(caplog.text, values) == []


def test_a_clean_run_finds_nothing_and_keeps_its_logs(
    github: GitHub, deleting: Flask, tmp_path: Path
) -> None:
    minted = mint(github, deleting, tmp_path)
    github.sandbox.set_run_logs(
        github.repo, minted.run_id, {"e2e": [("Keys", minted.run.logged()), ("Test", "ok\n")]}
    )
    complete(github, deleting, minted)
    ((state, findings, _),) = scans(deleting)
    assert (state, findings) == ("done", 0)
    for lease_id in minted.leases.values():
        assert "leaked_in_logs" not in [action for _, action, _ in events(deleting, lease_id)]
    assert logs_status(github, minted.run_id) == 302  # kept


def test_a_key_of_another_repository_or_wrong_in_its_last_character_is_not_found(
    github: GitHub, deleting: Flask, tmp_path: Path
) -> None:
    """The scan looks for this repository's keys only, exactly."""
    minted = mint(github, deleting, tmp_path)
    token = minted.values["API_TOKEN"]
    near = token[:-1] + ("A" if token[-1] != "A" else "B")
    github.sandbox.set_run_logs(
        github.repo,
        minted.run_id,
        {"e2e": [("Test", base64.b64encode(near.encode()).decode() + "\n")]},
    )
    complete(github, deleting, minted)
    ((_, findings, _),) = scans(deleting)
    assert findings == 0


def test_without_actions_write_the_key_is_retired_and_the_note_says_the_logs_stay(
    github: GitHub, deleting: Flask, tmp_path: Path
) -> None:
    minted = mint(github, deleting, tmp_path)
    github.sandbox.set_run_logs(
        github.repo, minted.run_id, {"e2e": [("Test", minted.values["API_TOKEN"] + "\n")]}
    )
    complete(github, deleting, minted)
    ((state, findings, note),) = scans(deleting)
    assert (state, findings) == ("done", 1)
    assert note is not None
    assert "the logs were not deleted" in note
    assert "Actions: write" in note
    assert logs_status(github, minted.run_id) == 302


def test_a_run_without_logs_is_tried_again_then_given_up(
    github: GitHub, deleting: Flask, tmp_path: Path, clock: Clock
) -> None:
    minted = mint(github, deleting, tmp_path)
    complete(github, deleting, minted)
    ((state, _, note),) = scans(deleting)
    assert state == "queued"
    assert note is not None
    assert "no logs" in note
    worker = RevocationWorker(deleting.extensions["runkeys"])
    for _ in range(10):
        clock.advance(hours=1)
        worker.run_once()
    ((state, _, note),) = scans(deleting)
    assert state == "done"
    assert note is not None
    assert note.startswith("given up")


def test_the_action_registers_the_fingerprint_of_a_password_part_only(
    github: GitHub, deleting: Flask, tmp_path: Path
) -> None:
    minted = mint(github, deleting, tmp_path)
    with ledger(deleting).begin() as conn:
        rows = conn.execute(select(tables.lease_parts)).all()
    password = minted.values["DATABASE_URL_PASSWORD"]
    assert [(r.lease_id, r.name, r.fingerprint) for r in rows] == [
        (minted.leases["DATABASE_URL"], "PASSWORD", hashlib.sha256(password.encode()).hexdigest())
    ]


@pytest.mark.parametrize(
    ("parts", "says"),
    [
        ([{"name": "PASSWORD", "fingerprint": "a" * 64}] * 2, "names a part twice"),
        ([{"name": f"P{i}", "fingerprint": "a" * 64} for i in range(9)], "parts"),
        ([{"name": "PASSWORD", "fingerprint": "a" * 63 + "g"}], "fingerprint"),
        ([{"name": "password", "fingerprint": "a" * 64}], "name"),
    ],
)
def test_a_bad_parts_list_is_refused_with_a_clear_error(
    github: GitHub, deleting: Flask, parts: list[dict[str, str]], says: str
) -> None:
    lease = github.lease()
    payload = kit.body(lease)
    payload["leases"][0]["parts"] = parts
    claims = github.claims()
    answer = deleting.test_client().post("/v1/leases", json=payload, headers=github.auth(claims))
    assert answer.status_code == 400, answer.json
    assert says in str(answer.json)
    with ledger(deleting).begin() as conn:
        assert conn.execute(select(tables.leases)).all() == []


def test_an_archive_over_the_cap_is_not_downloaded_whole_and_says_so(
    github: GitHub, tmp_path: Path, clock: Clock
) -> None:
    service = service_with(github, tmp_path, clock, RUNKEYS_LOG_SCAN_MAX_BYTES="1024")
    try:
        minted = mint(github, service, tmp_path)
        noise = secrets.token_hex(4000)  # incompressible: the zip itself is over the cap
        github.sandbox.set_run_logs(
            github.repo,
            minted.run_id,
            {"e2e": [("Test", f"{noise}\n{minted.values['API_TOKEN']}")]},
        )
        complete(github, service, minted)
        ((state, findings, note),) = scans(service)
        assert (state, findings) == ("done", 0)
        assert note == "not scanned: the log archive is larger than 1024 bytes"
    finally:
        service.extensions["runkeys"].close()


def test_a_failed_download_is_tried_again_and_its_signed_url_is_nowhere(
    github: GitHub, deleting: Flask, tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    minted = mint(github, deleting, tmp_path)
    github.sandbox.set_run_logs(
        github.repo, minted.run_id, {"e2e": [("Test", minted.values["API_TOKEN"])]}
    )
    github.sandbox.inject_fault("GET", r"^/_sandbox/run-logs/", status=500, times=3)
    complete(github, deleting, minted)
    ((state, findings, note),) = scans(deleting)
    assert (state, findings, note) == ("queued", 0, "HTTPError")
    # The download URL is signed: runkeys never logs it (PyGithub and urllib3 do, at DEBUG).
    ours = [r for r in caplog.records if r.name.startswith("runkeys")]
    assert ours
    assert not [r for r in ours if "run-logs" in f"{r.getMessage()} {getattr(r, 'fields', '')}"]
    clock.advance(hours=1)
    RevocationWorker(deleting.extensions["runkeys"]).drain()
    ((state, findings, _),) = scans(deleting)
    assert (state, findings) == ("done", 1)


def rerun(github: GitHub, run_id: int) -> None:
    """Attempt 1 failed; a re-run (attempt 2) started."""
    github.sandbox.set_run_status(github.repo, run_id, "completed", "failure")
    github.sandbox.set_run_status(github.repo, run_id, "in_progress", run_attempt=2)


def test_a_re_run_does_not_hide_what_the_first_attempt_printed(
    github: GitHub, deleting: Flask, tmp_path: Path
) -> None:
    """GitHub's GET of a run's logs serves the latest attempt's: a scan of attempt 1 queued
    while a clean re-run goes on asks for attempt 1's own archive, and finds the key there."""
    github.sandbox.update_installation(
        github.installation, permissions={**github.installation.permissions, "actions": "write"}
    )
    minted = mint(github, deleting, tmp_path)
    token = minted.values["API_TOKEN"]
    github.sandbox.set_run_logs(
        github.repo, minted.run_id, {"e2e": [("Test", f"collecting\nusing {token}\n")]}
    )
    rerun(github, minted.run_id)
    github.sandbox.set_run_logs(
        github.repo, minted.run_id, {"e2e": [("Test", "collecting\nok\n")]}, run_attempt=2
    )
    github.sandbox.clear_requests()
    complete(github, deleting, minted, attempt=1)

    assert (
        "log-scan",
        "leaked_in_logs",
        f"API_TOKEN (its value, as is) in the logs of run {minted.run_id} attempt 1: "
        "job 'e2e', step 'Test', line 2",
    ) in events(deleting, minted.leases["API_TOKEN"])
    asked = [r.path for r in github.sandbox.requests if r.method == "GET" and "/logs" in r.path]
    run = f"/repos/{github.repo.full_name}/actions/runs/{minted.run_id}"
    assert asked == [f"{run}/attempts/1/logs"]
    ((state, findings, note),) = scans(deleting)
    assert (state, findings) == ("done", 1)
    # GitHub deletes a run's logs, every attempt's: the re-run's clean ones go too.
    assert note is not None
    assert "the logs were deleted" in note
    assert [logs_status(github, minted.run_id, n) for n in (1, 2, None)] == [410, 410, 410]


def test_a_key_the_re_run_printed_is_its_own_finding_not_the_first_attempts(
    github: GitHub, deleting: Flask, tmp_path: Path
) -> None:
    """A finding belongs to the attempt whose logs held it: attempt 1's scan reads attempt 1's
    clean logs and finds nothing, though the re-run's (latest) logs print both attempts' keys
    (the re-run's own, and attempt 1's read from a stale secret); attempt 2's scan finds both,
    each recorded as in the logs of attempt 2."""
    first = mint(github, deleting, tmp_path)
    github.sandbox.set_run_logs(github.repo, first.run_id, {"e2e": [("Test", "ok\n")]})
    rerun(github, first.run_id)
    second = mint(github, deleting, tmp_path, run_id=first.run_id)
    assert second.leases["API_TOKEN"] != first.leases["API_TOKEN"]
    printed = f"{second.values['API_TOKEN']}\nstale: {first.values['API_TOKEN']}\n"
    github.sandbox.set_run_logs(
        github.repo, first.run_id, {"e2e": [("Test", printed)]}, run_attempt=2
    )
    complete(github, deleting, first, attempt=1)
    ((state, findings, _),) = scans(deleting)
    assert (state, findings) == ("done", 0)
    for lease_id in [*first.leases.values(), *second.leases.values()]:
        assert "leaked_in_logs" not in [action for _, action, _ in events(deleting, lease_id)]
    with ledger(deleting).begin() as conn:
        live = find(conn, LeaseFilter(states=(LeaseState.ACTIVE,), repository=str(github.repo.id)))
    assert sorted(lease.id for lease in live) == sorted(second.leases.values())
    assert logs_status(github, first.run_id) == 302  # kept: nothing was found in attempt 1

    github.sandbox.set_run_status(github.repo, first.run_id, "completed", "success")
    complete(github, deleting, first, attempt=2)
    where = f"in the logs of run {first.run_id} attempt 2: job 'e2e', step 'Test'"
    assert (
        "log-scan",
        "leaked_in_logs",
        f"API_TOKEN (its value, as is) {where}, line 1",
    ) in events(deleting, second.leases["API_TOKEN"])
    assert (
        "log-scan",
        "leaked_in_logs",
        f"API_TOKEN (its value, as is) {where}, line 2",
    ) in events(deleting, first.leases["API_TOKEN"])
