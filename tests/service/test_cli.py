"""`runkeys leases | revoke | sweep | worker` as an operator runs them (the real entry point,
configured from the environment)."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path

import pytest

from handler.cli import escaped
from handler.ledger import Ledger
from runkeys.leases import Lifetime
from runkeys_sandbox.launch import free_port
from tests.service.conftest import GitHub
from tests.service.kit import identity, lease, put, run_cli, states


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


def one_off(lease_id: str) -> str:
    """The id with its last character changed: a typo, not a lease."""
    return lease_id[:-1] + ("0" if lease_id[-1] != "0" else "1")


def test_revoke_of_an_unknown_lease_fails_and_still_queues_the_known(
    env: dict[str, str], ledger: Ledger, github: GitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    known, other = put(ledger, identity("octo/app", 1, run_id=10), github.lease(), github.lease())
    typo = one_off(other)
    code, out, err = run_cli(capsys, "revoke", "--lease", typo, "--lease", known)
    assert (code, json.loads(out)) == (1, {"queued": [known]})
    assert err.splitlines()[-1] == f"runkeys: no lease with id {typo} in this ledger"
    assert states(ledger, [known, other]) == {known: "revoking", other: "active"}
    # Asked again: nothing new to queue, and that is no failure; each id says why.
    code, out, err = run_cli(capsys, "revoke", "--lease", known)
    assert (code, json.loads(out)) == (0, {"queued": []})
    assert err.splitlines()[-1] == f"runkeys: {known} is revoking: not queued"


def test_revoke_of_a_run_pr_or_repository_with_no_lease_fails(
    env: dict[str, str], ledger: Ledger, github: GitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target matching no lease at all is a typo; one whose leases are all retired already
    is work done (a script may revoke twice)."""
    put(ledger, identity("octo/app", 1, run_id=20), github.lease())
    put(ledger, identity("octo/app", 1, run_id=30, ref="refs/pull/8/merge"), github.lease())
    nothing = "runkeys: no lease in this ledger matches; nothing was queued"
    for argv in (
        ["--run", "21"],
        ["--run", "20", "--repository", "octo/app2"],  # a sibling of the same owner
        ["--pr", "9", "--repository", "octo/app"],
        ["--pr", "8", "--repository", "octo/lib"],
        ["--all", "--repository", "octo/ap"],
        ["--all", "--repository", "2"],  # by id: another repository's
    ):
        code, out, err = run_cli(capsys, "revoke", *argv)
        assert (code, json.loads(out), err.splitlines()[-1]) == (1, {"queued": []}, nothing), argv
    assert len(json.loads(run_cli(capsys, "revoke", "--run", "20")[1])["queued"]) == 1
    assert run_cli(capsys, "revoke", "--run", "20")[:2] == (0, '{"queued": []}\n')
    assert (
        len(json.loads(run_cli(capsys, "revoke", "--all", "--repository", "1")[1])["queued"]) == 1
    )
    assert run_cli(capsys, "revoke", "--all", "--repository", "OCTO/APP")[:2] == (
        0,
        '{"queued": []}\n',
    )


HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202eKEY\r\n"
SHOWN = "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202eKEY\\r\\n"


def test_leases_never_prints_a_control_character_from_the_ledger(
    env: dict[str, str], ledger: Ledger, github: GitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    """The service refuses such key names now; a ledger may still hold them (registered
    before, or written by hand), and a terminal must not act on them."""
    from datetime import UTC, datetime

    from handler.ledger.history import record

    (hostile,) = put(
        ledger,
        identity("octo/app", 1, run_id=10),
        lease(repository="octo/app", key_name=HOSTILE, provider=HOSTILE),
    )
    with ledger.begin() as conn:
        record(
            conn, [hostile], actor=HOSTILE, action=HOSTILE, detail=HOSTILE, now=datetime.now(UTC)
        )
    for argv in (["leases"], ["leases", "--lease", hostile], ["leases", "--json"]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 0
        printed = out + err
        assert not [c for c in printed if c != "\n" and not c.isprintable()], argv
        if "--json" not in argv:
            assert SHOWN in out  # each character escaped, as Python writes it
    _, out, _ = run_cli(capsys, "leases", "--json", "--lease", hostile)
    shown = json.loads(out)
    assert (shown["key_name"], shown["events"][-1]["detail"]) == (HOSTILE, HOSTILE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("API_TOKEN", "API_TOKEN"),
        ("Zoë Ops", "Zoë Ops"),  # printable letters stay
        ("\x1b[2J", "\\x1b[2J"),
        ("a\tb", "a\\tb"),
        ("\x7f\x9b", "\\x7f\\x9b"),  # DEL, and the 8-bit CSI some terminals act on
        ("\u202egnp.exe", "\\u202egnp.exe"),  # right-to-left override
        ("\u200b", "\\u200b"),  # zero-width space
    ],
)
def test_escaped_writes_out_what_a_terminal_would_act_on(text: str, expected: str) -> None:
    assert escaped(text) == expected


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


@pytest.mark.parametrize("case", ["taken", "the service's own", "no port"])
def test_serve_refuses_a_metrics_address_it_cannot_have(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    case: str,
) -> None:
    """Start-up stops naming RUNKEYS_METRICS_BIND, before gunicorn starts, and leaves no
    metrics directory behind (`serve` makes one for the master to read the workers' files)."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    service_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        value, message = {
            "taken": (
                f"127.0.0.1:{port}",
                f"cannot listen on 127.0.0.1:{port} (Address already in use)",
            ),
            "the service's own": (
                f"127.0.0.1:{service_port}",
                f"is 127.0.0.1:{service_port}, the address the service itself binds",
            ),
            "no port": ("127.0.0.1", "'127.0.0.1' is not HOST:PORT"),
        }[case]
        monkeypatch.setenv("RUNKEYS_METRICS_BIND", value)
        code, _, err = run_cli(
            capsys, "serve", "--workers", "2", "--bind", f"127.0.0.1:{service_port}"
        )
    assert code == 1
    assert f"RUNKEYS_METRICS_BIND: {message}" in err
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert not list(tmp_path.glob("runkeys-metrics-*"))
