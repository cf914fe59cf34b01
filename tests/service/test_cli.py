"""`runkeys leases | revoke | sweep | worker` as an operator runs them (the real entry point,
configured from the environment)."""

from __future__ import annotations

import json

import pytest

from handler.ledger import Ledger
from runkeys.leases import Lifetime
from tests.service.conftest import GitHub
from tests.service.kit import identity, put, run_cli, states


def test_leases_lists_and_filters(
    env: dict[str, str], ledger: Ledger, github: GitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "leases")[2].splitlines()[-1] == "(no leases)"
    a = put(ledger, identity("octo/app", 1, run_id=10), github.lease(key_name="ALPHA"))
    put(
        ledger,
        identity("octo/lib", 2, run_id=11),
        github.lease(key_name="BETA", lifetime=Lifetime.JOB),
    )
    code, out, _ = run_cli(capsys, "leases")
    assert code == 0
    assert out.splitlines()[0].split() == [
        "ID",
        "STATE",
        "LIFETIME",
        "KEY",
        "PROVIDER",
        "REPOSITORY",
        "RUN",
        "EXPIRES",
    ]
    assert len(out.splitlines()) == 3
    code, out, _ = run_cli(capsys, "leases", "--json", "--repository", "octo/app")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["key_name"] for r in rows] == ["ALPHA"]
    assert rows[0]["state"] == "active"
    _, out, _ = run_cli(capsys, "leases", "--json", "--lifetime", "job", "--state", "active")
    assert [json.loads(line)["key_name"] for line in out.splitlines()] == ["BETA"]
    _, out, _ = run_cli(capsys, "leases", "--json", "--lease", a[0])
    (shown,) = [json.loads(line) for line in out.splitlines()]
    assert [e["action"] for e in shown["events"]] == ["registered"]
    _, out, _ = run_cli(capsys, "leases", "--run", "999")
    assert len(out.splitlines()) == 1


def test_revoke_by_lease_run_pr_and_repository(
    env: dict[str, str], ledger: Ledger, github: GitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    (single,) = put(ledger, identity("octo/app", 1, run_id=10), github.lease())
    run_leases = put(
        ledger,
        identity("octo/app", 1, run_id=20),
        github.lease(),
        github.lease(lifetime=Lifetime.JOB),
    )
    (pr_lease,) = put(
        ledger,
        identity("octo/app", 1, run_id=30, ref="refs/pull/8/merge"),
        github.lease(lifetime=Lifetime.PR),
    )
    lib = put(ledger, identity("octo/lib", 2, run_id=40), github.lease(), github.lease())
    code, out, _ = run_cli(capsys, "revoke", "--lease", single, "--reason", "leaked in a log")
    assert (code, json.loads(out)) == (0, {"queued": [single]})
    assert sorted(json.loads(run_cli(capsys, "revoke", "--run", "20")[1])["queued"]) == sorted(
        run_leases
    )
    assert json.loads(run_cli(capsys, "revoke", "--pr", "8", "--repository", "octo/app")[1])[
        "queued"
    ] == [pr_lease]
    assert sorted(
        json.loads(run_cli(capsys, "revoke", "--all", "--repository", "2")[1])["queued"]
    ) == sorted(lib)
    assert set(states(ledger, [single, *run_leases, pr_lease, *lib]).values()) == {"revoking"}
    _, out, _ = run_cli(capsys, "leases", "--json", "--lease", single)
    (shown,) = [json.loads(line) for line in out.splitlines()]
    assert shown["events"][-1]["actor"] == "operator"
    assert shown["events"][-1]["detail"].endswith(": leaked in a log")


def test_revoke_refuses_an_ambiguous_target(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "revoke", "--pr", "8")
    assert code == 1
    assert "--repository" in err


def test_sweep_and_worker_once(
    env: dict[str, str], ledger: Ledger, github: GitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime, timedelta

    old = datetime.now(UTC) - timedelta(hours=2)
    (expired,) = put(
        ledger, identity(github.repo.full_name, github.repo.id), github.lease(now=old, secret=False)
    )
    code, out, _ = run_cli(capsys, "sweep", "--no-reconcile")
    assert code == 0
    assert json.loads(out)["expired"] == 1
    code, out, _ = run_cli(capsys, "worker", "--once")
    assert (code, json.loads(out)) == (0, {"retired_or_attempted": 1})
    assert states(ledger, [expired]) == {expired: "revoked"}


def test_serve_refuses_to_start_without_a_webhook_secret(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RUNKEYS_WEBHOOK_SECRET")
    code, _, err = run_cli(capsys, "serve", "--workers", "1")
    assert code == 1
    assert "RUNKEYS_WEBHOOK_SECRET: is not set" in err
