"""Who `runkeys revoke` records in each lease's history: the operator as given (`--as NAME`,
else RUNKEYS_OPERATOR), else the OS user, said to be only that. The name is printed back by
`runkeys leases`, so one a terminal could act on is refused before anything is queued."""

from __future__ import annotations

import json

import pytest

from handler.ledger import Ledger
from tests.service.conftest import GitHub
from tests.service.kit import identity, put, run_cli, states


def revoke_and_show(
    capsys: pytest.CaptureFixture[str], lease_id: str, *argv: str
) -> tuple[str, str]:
    code, _, err = run_cli(capsys, "revoke", "--lease", lease_id, "--reason", "leaked", *argv)
    assert code == 0, err
    code, out, _ = run_cli(capsys, "leases", "--json", "--lease", lease_id)
    assert code == 0
    (shown,) = [json.loads(line) for line in out.splitlines()]
    last = shown["events"][-1]
    return last["actor"], last["detail"]


def test_the_operator_is_recorded_as_given(
    env: dict[str, str],
    ledger: Ledger,
    github: GitHub,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second, third = put(
        ledger, identity("octo/app", 1), github.lease(), github.lease(), github.lease()
    )
    monkeypatch.setenv("LOGNAME", "carol")  # what getpass reads first
    assert revoke_and_show(capsys, first, "--as", "Alice Ops") == (
        "operator",
        "operator Alice Ops: leaked",
    )
    monkeypatch.setenv("RUNKEYS_OPERATOR", "bob@example.com")
    assert revoke_and_show(capsys, second) == ("operator", "operator bob@example.com: leaked")
    monkeypatch.setenv("RUNKEYS_OPERATOR", "   ")  # blank: as if unset
    assert revoke_and_show(capsys, third) == (
        "operator",
        "operator carol (OS user; no --as or RUNKEYS_OPERATOR given): leaked",
    )


def test_as_wins_over_the_environment(
    env: dict[str, str],
    ledger: Ledger,
    github: GitHub,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (lease_id,) = put(ledger, identity("octo/app", 1), github.lease())
    monkeypatch.setenv("RUNKEYS_OPERATOR", "ci-bot")
    assert revoke_and_show(capsys, lease_id, "--as", "dana")[1] == "operator dana: leaked"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "\x1b[2Jroot",  # clears the screen of whoever reads the history
        "alice\nworker revoked",  # a second, forged history line
        "alice\u202e",  # right-to-left override
        "alice\u200b",  # zero-width space: two names that look the same
        "x" * 65,  # one more than the limit
    ],
    ids=["empty", "escape", "newline", "bidi", "zero-width", "65-chars"],
)
def test_a_name_a_terminal_could_act_on_is_refused_before_anything_is_queued(
    *,
    env: dict[str, str],
    ledger: Ledger,
    github: GitHub,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    (lease_id,) = put(ledger, identity("octo/app", 1), github.lease())
    code, out, err = run_cli(capsys, "revoke", "--lease", lease_id, "--as", name)
    assert (code, out) == (1, "")
    assert "--as is not a name to record" in err
    assert all(c == "\n" or c.isprintable() for c in err)  # the refused name, escaped
    if name:  # a blank RUNKEYS_OPERATOR is as if unset
        monkeypatch.setenv("RUNKEYS_OPERATOR", name)
        code, _, err = run_cli(capsys, "revoke", "--lease", lease_id)
        assert code == 1
        assert "RUNKEYS_OPERATOR is not a name to record" in err
    assert states(ledger, [lease_id]) == {lease_id: "active"}


def test_a_name_at_the_limit_is_taken(
    env: dict[str, str], ledger: Ledger, github: GitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    (lease_id,) = put(ledger, identity("octo/app", 1), github.lease())
    name = "x" * 64
    assert revoke_and_show(capsys, lease_id, "--as", name)[1] == f"operator {name}: leaked"


def test_an_os_user_name_with_control_characters_is_refused(
    env: dict[str, str],
    ledger: Ledger,
    github: GitHub,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """getpass takes LOGNAME from the environment as it is: no more trusted than --as."""
    (lease_id,) = put(ledger, identity("octo/app", 1), github.lease())
    monkeypatch.delenv("RUNKEYS_OPERATOR", raising=False)
    monkeypatch.setenv("LOGNAME", "root\x1b[8m")
    code, _, err = run_cli(capsys, "revoke", "--lease", lease_id)
    assert code == 1
    assert "the OS user name is not a name to record: 'root\\x1b[8m'" in err
    assert "--as NAME" in err
    assert states(ledger, [lease_id]) == {lease_id: "active"}
