"""Every benchmark runs, at a toy size, end to end: so none of them rots. Speed is not asserted
here (it is measured by `make bench`, never in tests); what is asserted is that each one
measured what it says against its baseline and wrote its results with the machine."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from bench import __main__ as everything
from bench import broker, ledger, logscan, revocation, storm, webhook
from tests.services import need, skip_or_fail

pytestmark = pytest.mark.slow


def results(out: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / f"{name}.json").read_text())
    markdown = (out / f"{name}.md").read_text()
    assert data["machine"]["cpu"]
    assert data["machine"]["python"]
    assert data["machine"]["sqlite"]
    assert data["rows"]
    assert data["summary"]
    assert data["targets"]
    assert "Machine: " in markdown
    for line in data["summary"]:
        assert line["measured"]
        assert line["baseline"]
        assert line["ratio"]
    return data


def test_webhook_intake(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        skip_or_fail("wrk is not installed (apt-get install -y wrk)")
    assert webhook.main(["--quick", "--out", str(tmp_path)]) == 0
    data = results(tmp_path, "webhook")
    loads = data["raw"]["loads"]
    for case in ("bare", "no_leases", "leases", "floor"):
        assert loads[case]
        assert all(x["requests"] > 0 and x["errors"] == 0 for x in loads[case])
    # Every request of the 10-lease case named a fresh run and queued its leases.
    assert min(data["raw"]["leases_queued_per_request"]) >= 9
    # And so did every request of the reference that makes the same ledger read and write.
    assert min(data["raw"]["floor_leases_queued_per_request"]) >= 9
    assert any("against the write it needs" in line["what"] for line in data["summary"])


def test_revocation_latency(tmp_path: Path) -> None:
    assert revocation.main(["--quick", "--out", str(tmp_path)]) == 0
    data = results(tmp_path, "revocation")
    timings = data["raw"]["timings"]
    assert len(timings) == len(data["raw"]["floors"]) == 3
    for t in timings:
        assert 0 < t["queued"] < t["total"]


def test_the_action_and_the_summary_of_all(tmp_path: Path) -> None:
    """`python -m bench --only action`: the action's benchmark, then the table of all."""
    assert everything.main(["--quick", "--only", "action", "--out", str(tmp_path)]) == 0
    data = results(tmp_path, "action")
    by_keys = {(r["keys"], r["who"]): r for r in data["rows"]}
    # The installation, its token, whether the environment exists, creating it, its public
    # key, and one PUT per secret: 5 + 10.
    assert by_keys[(10, "runkeys-action")]["calls"] == 15
    assert by_keys[(10, "runkeys-action")]["minimum"] == 15
    assert by_keys[(10, "naive PyGithub")]["calls"] == 2 * 10 + 4
    table = (tmp_path / "summary.md").read_text()
    assert "| Action, 10 keys into a new environment |" in table
    assert "Machine: " in table


def test_broker_mode_against_local_mode(tmp_path: Path) -> None:
    assert broker.main(["--quick", "--out", str(tmp_path)]) == 0
    data = results(tmp_path, "broker")
    environment = [
        "GET /repos/{owner}/{repo}/environments/{environment_name}",
        "PUT /repos/{owner}/{repo}/environments/{environment_name}",
        "GET /repos/{owner}/{repo}/environments/{environment_name}/secrets/public-key",
        *["PUT /repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"] * 10,
    ]
    app = [
        "GET /repos/{owner}/{repo}/installation",
        "POST /app/installations/{installation_id}/access_tokens",
    ]
    # A fresh service's first broker request: the installation once, its token, the
    # environment's calls; local mode's step makes the same 15, and its service looks the
    # installation up once more for the lease registration.
    cold = data["raw"]["cold"]
    assert cold["broker"] == app + environment
    assert sorted(cold["local"]) == sorted([*app, app[0], *environment])
    mints = data["raw"]["mints"]
    assert [m["calls"] for m in mints["broker"]] == [environment]  # warm: both kept
    assert [m["calls"] for m in mints["local"]] == [app + environment]
    assert all(m["service_ms"] > 0 for m in mints["broker"] + mints["local"])
    assert [m["service_ms"] for m in mints["local-alone"]] == [0]
    bursts = data["raw"]["bursts"]
    assert sorted(bursts) == ["environment", "job"]
    for answers in bursts.values():
        assert [(a["status"], a["error"]) for a in answers] == [(201, None)] * 4
    for answers in data["raw"]["alone"].values():  # the bursts' baseline
        assert [(a["status"], a["error"]) for a in answers] == [(201, None)] * 2
    for stats in data["raw"]["burst_stats"].values():
        assert stats["service_cpu_ms_per_request"] > 0
    assert any(line["what"].startswith("Broker mode, 10 keys") for line in data["summary"])


def test_the_ledger(tmp_path: Path) -> None:
    need("postgres")
    assert ledger.main(["--quick", "--out", str(tmp_path)]) == 0
    data = results(tmp_path, "ledger")
    assert {r["engine"] for r in data["rows"]} == {"SQLite", "PostgreSQL"}
    plans = data["raw"]["plans"]
    assert plans["sqlite"]["webhook"]
    assert plans["postgres"]["sweep"]


def test_the_storm(tmp_path: Path) -> None:
    """Tiny (4 pull requests, a GitHub minute in 0.1 s): the writes counted at the stand-in,
    every storm key revoked at its provider, quiet latencies on both sides of the storm."""
    worker_log = logging.getLogger("runkeys.service.worker")
    level = worker_log.level
    assert storm.main(["--quick", "--out", str(tmp_path)]) == 0
    # The storm quiets the worker's log while it runs, and only then: later tests read it.
    assert worker_log.level == level
    data = results(tmp_path, "storm")
    raw = data["raw"]
    # Every environment deleted once; a secret deleted alone only when its environment's
    # leases were not claimed together (the stand-in's log, not the worker's, says so).
    assert raw["environment_deletes"] == 4
    assert 0 <= raw["secret_deletes"] <= 40
    assert raw["writes"] == raw["secret_deletes"] + raw["environment_deletes"]
    (used,) = [t for t in data["targets"] if t["name"] == "GitHub writes used / minimum"]
    assert used["measured"] == f"{raw['writes'] / 4:.2f}"
    assert raw["refusals"] == {}
    assert len(raw["revoke_delay"]) == len(raw["deleted_delay"]) == 40
    assert max(raw["revoke_delay"]) <= max(raw["deleted_delay"])
    assert raw["quiet_idle"]
    assert raw["quiet_during"]


def test_the_storms_bound() -> None:
    """The least time GitHub's windows allow: 80 in the first minute, then 80 a minute, and
    past 500 the hour's window (the 501st a full hour after the first)."""
    assert storm.least_time(80, 60, 80, 500) == 0
    assert storm.least_time(81, 60, 80, 500) == 60
    assert storm.least_time(500, 60, 80, 500) == 6 * 60
    assert storm.least_time(501, 60, 80, 500) == 3600
    assert storm.least_time(0, 60, 80, 500) == 0


def test_the_log_scan(tmp_path: Path) -> None:
    """The scan finds every key planted in the made-up archive, and nothing else."""
    assert logscan.main(["--quick", "--out", str(tmp_path)]) == 0
    data = results(tmp_path, "logscan")
    assert {t["name"]: t["met"] for t in data["targets"]}["every planted key found, nothing else"]
    assert len(data["raw"]["scans"]) == len(data["raw"]["cpu"]) == 2
    assert data["raw"]["text_bytes"] >= 2_000_000
