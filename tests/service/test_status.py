"""What an operator sees of the retirement backlog, per installation: `/metrics`, `runkeys
status`, and the sweeper's warning when the oldest queued retirement waits too long."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.serving import make_server

from handler.ledger import Ledger
from handler.ledger.queue import LeasesById, claim_due, finish_failed, queue
from handler.service import Service
from handler.sweeper import Sweeper
from tests.service.conftest import GitHub
from tests.service.kit import Clock, identity, put, run_cli

FIRST, SECOND = 5, 7  # installation ids


def queued(
    ledger: Ledger, github: GitHub, installation: int, count: int, at: datetime
) -> list[str]:
    """`count` leases of `installation`, registered and queued for retirement at `at`."""
    ids = put(
        ledger,
        identity(),
        *(github.lease() for _ in range(count)),
        installation_id=installation,
        now=at,
    )
    with ledger.begin() as conn:
        queue(conn, LeasesById(tuple(ids)), actor="t", reason="t", now=at)
    return ids


def give_up(ledger: Ledger, lease_id: str, now: datetime) -> None:
    """Mark one queued lease `failed`, as the worker does after its last attempt."""
    with ledger.begin() as conn:
        claim = claim_due(conn, now=now, limit=100, hold=timedelta(minutes=1))
        for lease in claim.leases:
            failed = lease.id == lease_id
            finish_failed(
                conn,
                lease.id,
                claim.token,
                now=now,
                error="t",
                retry_at=now + timedelta(hours=1),
                give_up=failed,
            )


def test_metrics_show_each_installations_backlog_and_its_oldest_wait(
    app: Flask, client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    ledger = app.extensions["runkeys"].ledger
    start = clock.now
    first = queued(ledger, github, FIRST, 3, start)
    put(ledger, identity(), github.lease(), installation_id=FIRST, now=start)  # active: not counted
    clock.advance(minutes=5)
    queued(ledger, github, SECOND, 2, clock.now)
    clock.advance(minutes=15)
    give_up(ledger, first[0], clock.now)
    text = client.get("/metrics").get_data(as_text=True)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    backlog = {
        (s.labels["installation"], s.labels["state"]): s.value
        for s in families["runkeys_retirement_backlog"].samples
    }
    assert backlog == {
        ("5", "waiting"): 2.0,
        ("5", "failed"): 1.0,
        ("7", "waiting"): 2.0,
        ("7", "failed"): 0.0,
    }
    oldest = {
        s.labels["installation"]: s.value
        for s in families["runkeys_retirement_oldest_waiting_seconds"].samples
    }
    assert oldest == {"5": 20 * 60.0, "7": 15 * 60.0}


def test_a_failed_lease_alone_is_not_a_wait(
    app: Flask, client: FlaskClient, github: GitHub, clock: Clock
) -> None:
    """`failed` has its own alert (runkeys_revocations_total{outcome="failed"}); a lease retried
    every six hours must not read as a backlog hours old."""
    ledger = app.extensions["runkeys"].ledger
    (only,) = queued(ledger, github, FIRST, 1, clock.now)
    clock.advance(hours=3)
    give_up(ledger, only, clock.now)
    text = client.get("/metrics").get_data(as_text=True)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    oldest = families["runkeys_retirement_oldest_waiting_seconds"].samples
    assert [(s.labels["installation"], s.value) for s in oldest] == [("5", 0.0)]


def test_status_summarises_the_backlog_and_fails_when_one_is_behind(
    env: dict[str, str], ledger: Ledger, github: GitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "status")
    assert code == 0
    assert "retirement backlog: none" in out
    now = datetime.now(UTC)
    queued(ledger, github, FIRST, 3, now - timedelta(minutes=20))
    queued(ledger, github, SECOND, 1, now - timedelta(minutes=2))
    code, out, _ = run_cli(capsys, "status", "--json")
    summary = json.loads(out)
    assert code == 1  # the first installation's oldest waited 20 minutes: over 15 (default)
    assert summary["leases"]["revoking"] == 4
    assert summary["backlog_warn_after_seconds"] == 900
    rows = {row["installation"]: row for row in summary["installations"]}
    assert (rows[FIRST]["waiting"], rows[FIRST]["behind"]) == (3, True)
    assert 20 * 60 <= rows[FIRST]["oldest_waiting_seconds"] < 20 * 60 + 30
    assert (rows[SECOND]["waiting"], rows[SECOND]["behind"]) == (1, False)
    code, out, _ = run_cli(capsys, "status")
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert code == 1
    assert lines["5"].split()[1:3] == ["3", "0"]
    assert lines["5"].endswith("BEHIND")
    assert not lines["7"].endswith("BEHIND")
    env_later = {"RUNKEYS_BACKLOG_WARN_AFTER": "30m"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env_later.items():
            patch.setenv(key, value)
        code, out, _ = run_cli(capsys, "status")
    assert code == 0
    assert "BEHIND" not in out


@pytest.fixture
def service(app: Flask) -> Service:
    made: Service = app.extensions["runkeys"]
    return made


def test_the_sweeper_warns_of_an_installation_behind_and_only_of_it(
    service: Service, github: GitHub, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    queued(service.ledger, github, FIRST, 2, clock.now)
    clock.advance(seconds=1)
    queued(service.ledger, github, SECOND, 1, clock.now)
    clock.advance(minutes=15)  # the second's oldest has waited exactly the threshold: not over
    report = Sweeper(service).sweep(reconcile=False)
    warned = [r for r in caplog.records if r.getMessage() == "retirement backlog is behind"]
    assert report.installations_behind == 1
    assert [r.__dict__["fields"]["installation"] for r in warned] == [FIRST]
    fields = warned[0].__dict__["fields"]
    assert (fields["waiting"], fields["oldest_waiting_seconds"]) == (2, 15 * 60 + 1)


@pytest.fixture
def metrics_url(app: Flask) -> Iterator[str]:
    """The service's own app over HTTP, for `runkeys status --metrics` to read."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    thread.join(5)


def test_status_adds_githubs_limits_per_installation_from_the_services_metrics(
    env: dict[str, str], app: Flask, metrics_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pace = app.extensions["runkeys"].metrics.pacing  # what the service's paces report
    for write in (True, True, False):
        pace.called(42, write=write)
    pace.waited(42, 2.5, "writes_per_minute")
    pace.waited(42, 1.0, "points_per_minute")
    pace.refused(42)
    pace.remaining(42, 4990)
    pace.called(7, write=False)
    code, out, _ = run_cli(capsys, "status", "--json", "--metrics", metrics_url)
    assert code == 0
    assert json.loads(out)["github"] == {
        "42": {
            "requests": 3.0,
            "waits": 2.0,
            "waited_seconds": 3.5,
            "refusals": 1.0,
            "primary_remaining": 4990.0,
        },
        "7": {"requests": 1.0},
    }
    code, out, _ = run_cli(capsys, "status", "--metrics", metrics_url)
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[-2:]}
    assert rows == {"42": ["3", "2", "0m03s", "1", "4990"], "7": ["1", "0", "0m00s", "0", "-"]}


@pytest.mark.parametrize("path", ["/nowhere", "/healthz"])
def test_status_names_a_metrics_url_that_is_not_the_services(
    env: dict[str, str], metrics_url: str, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    url = metrics_url.replace("/metrics", path)
    code, out, err = run_cli(capsys, "status", "--metrics", url)
    assert (code, out) == (1, "")
    assert url in err
