"""Every command docs/service.md's Operations section shows, run as written (its placeholders
filled with a ledger's real ids, its optional parts included): each must succeed."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from handler.ledger import Ledger
from tests.service.conftest import GitHub
from tests.service.kit import identity, put, run_cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "service.md"


def operations_commands() -> list[str]:
    section = DOC.read_text().split("\n## Operations\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_section_shows_every_operator_command() -> None:
    shown = {shlex.split(line)[1] for line in operations_commands()}
    assert shown == {"leases", "revoke", "sweep", "worker", "audit", "status"}


def test_each_command_the_operations_section_shows_runs(
    env: dict[str, str], ledger: Ledger, github: GitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = github.repo.full_name
    run_id = github.claims().run_id  # a run the sandbox knows: `sweep` asks GitHub about it
    first, second, _ = put(
        ledger,
        identity(repository, github.repo.id, run_id=run_id),
        github.lease(),
        github.lease(key_name="SECOND"),
        github.lease(key_name="THIRD"),
    )
    put(
        ledger,
        identity(repository, github.repo.id, run_id=run_id + 1, ref="refs/pull/42/merge"),
        github.lease(),
    )
    filled = {"ID": first, "ID…": second, "123": str(run_id), "octo/app": repository}
    ran = []
    for line in operations_commands():
        argv = shlex.split(line.replace("[", "").replace("]", ""))
        assert argv[0] == "runkeys"
        argv = [filled.get(arg, arg) for arg in argv[1:]]
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, f"{line}: {err}"
        if "--json" in argv or argv[0] in ("revoke", "sweep", "worker"):
            for row in out.splitlines():
                json.loads(row)
        ran.append(argv[0])
    assert ran.count("revoke") == 4
    _, out, _ = run_cli(capsys, "leases", "--json", "--lease", first)
    events = [(e["action"], e["detail"]) for e in json.loads(out)["events"]]
    assert ("queued", "operator alice: leaked in a log") in events
