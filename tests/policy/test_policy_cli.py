"""`runkeys policy check` on the example policies of docs/examples/policy/ and on broken
inputs: exit codes and messages written here, every command docs/policy.md shows run."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from runkeys.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = "docs/examples/policy"
DOC = ROOT / "docs" / "policy.md"


def check(example: str, claims: str, keys: str, *extra: str) -> list[str]:
    where = f"{EXAMPLES}/{example}"
    return [
        "policy",
        "check",
        "--policy",
        f"{where}/policy.yml",
        "--claims",
        f"{where}/{claims}.json",
        "--keys",
        f"{where}/{keys}.yml",
        *extra,
    ]


# (argv, exit status, what stdout says). The oracles: what each example is written to show.
CASES = [
    (
        check("monorepo", "claims-payments-pr", "keys-payments", "--environment", "ci-pr-12"),
        0,
        [
            "allow  PAYMENTS_DATABASE_URL (postgres on PAYMENTS_DB): rule 'payments-ci'",
            "allow  WEBHOOK_SIGNING_KEY (random): rule 'payments-ci'",
            "2 allowed, 0 denied, to environment 'ci-pr-12'",
        ],
    ),
    (
        check(
            "monorepo", "claims-payments-pr-edited", "keys-payments", "--environment", "ci-pr-12"
        ),
        1,
        [
            "deny   PAYMENTS_DATABASE_URL (postgres on PAYMENTS_DB): no rule matched; "
            "job_workflow_ref: closest is rule 'payments-ci': the token's job_workflow_ref is "
            "'acme/monorepo/.github/workflows/payments-integration.yml@refs/pull/12/merge'",
            "0 allowed, 2 denied",
        ],
    ),
    (
        check("monorepo", "claims-search-push", "keys-search"),
        0,
        ["allow  SEARCH_REDIS_URL (redis on SEARCH_CACHE): rule 'search-ci'"],
    ),
    (
        check("monorepo", "claims-payments-pr", "keys-search"),
        1,
        ["deny   SEARCH_REDIS_URL (redis on SEARCH_CACHE): rule 'payments-ci'; provider: "],
    ),
    (
        check("org-teams", "claims-billing-api", "keys-billing", "--environment", "ci-pr-3"),
        0,
        ["allow  BILLING_DATABASE_URL (mysql on BILLING_MYSQL): rule 'billing-team'"],
    ),
    (
        check("org-teams", "claims-data-etl", "keys-billing"),
        1,
        ["rule 'data-team'; provider: the rule allows no mysql key"],
    ),
    (
        check("org-teams", "claims-billing-api-self-hosted", "keys-billing"),
        1,
        [
            "rule 'no-self-hosted'; deny: keys are minted for GitHub-hosted runners only",
            "fix: the policy forbids this explicitly",
        ],
    ),
    (
        check(
            "main-only-rotation",
            "claims-schedule-main",
            "keys-rotate",
            "--repository-secrets",
            "--json",
        ),
        0,
        [
            "allow  API_SIGNING_KEY (random): rule 'rotate-on-main'",
            "1 allowed, 0 denied, to repository secrets",
        ],
    ),
    (
        check("main-only-rotation", "claims-branch", "keys-rotate", "--repository-secrets"),
        1,
        [
            # Every claim the closest rule failed on: the workflow's ref is the branch too.
            "no rule matched; ref, workflow_ref: closest is rule 'rotate-on-main': the token's "
            "ref is 'refs/heads/rotate-fix'; the rule wants 'refs/heads/main'; the token's "
            "workflow_ref is 'acme/api/.github/workflows/rotate.yml@refs/heads/rotate-fix'",
            "fix: run from a ref and workflow_ref the rule names",
        ],
    ),
    (  # the rotation writes repository secrets only, never into the job
        check("main-only-rotation", "claims-schedule-main", "keys-rotate"),
        1,
        ["destination: this job only is not a destination the rule allows (repository secrets)"],
    ),
]


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the examples are named as the docs name them


@pytest.mark.parametrize(("argv", "status", "says"), CASES)
def test_each_example(
    argv: list[str], status: int, says: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == status
    out, err = capsys.readouterr()
    assert err == ""
    for text in says:
        assert text in out
    if "--json" in argv:
        record = json.loads(out.splitlines()[-1])
        assert record["outcome"] == "allow"
        assert record["rules"] == ["rotate-on-main"]
        assert (record["repository"], record["run_id"], record["run_attempt"]) == (
            "acme/api",
            "7001",
            "1",
        )
        assert record["actor"] == "acme-bot"
        assert record["workflow"] == "acme/api/.github/workflows/rotate.yml@refs/heads/main"
        assert record["destination"] == "repository secrets"
        assert [(k["name"], k["provider"], k["outcome"]) for k in record["keys"]] == [
            ("API_SIGNING_KEY", "random", "allow")
        ]


def doc_commands() -> list[tuple[list[str], int]]:
    """Each `runkeys` line of the page's sh blocks and the exit status its comment says."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S):
        for line in block.splitlines():
            command, _, comment = line.partition("  # exit ")
            found.append((shlex.split(command), int(comment.split(":")[0])))
    return found


def test_every_command_the_page_shows_is_an_example_checked_here() -> None:
    shown = doc_commands()
    assert len(shown) == 9
    for argv, status in shown:
        assert argv[0] == "runkeys"
        assert (argv[1:], status) in [(case[0], case[1]) for case in CASES], argv


def test_every_example_file_is_used() -> None:
    used = {arg for case in CASES for arg in case[0] if arg.startswith(EXAMPLES)}
    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / EXAMPLES).rglob("*.*")}
    assert files == used


def test_the_installed_command_exits_0_1_and_2_without_a_traceback(tmp_path: Path) -> None:
    """Through the real entry point, as a policy repository's CI would (main(argv) runs the
    rest: each start of the command costs a second)."""
    runkeys = Path(sys.executable).with_name("runkeys")
    bad = tmp_path / "policy.yml"
    bad.write_text("version: 1\nrules:\n  - name: x\n    colour: red\n")
    allowed, denied = doc_commands()[:2]
    broken = (["runkeys", *_with(allowed[0][1:], "--policy", str(bad))], 2)
    for argv, status in (allowed, denied, broken):
        done = subprocess.run(
            [str(runkeys), *argv[1:]], cwd=ROOT, capture_output=True, text=True, check=False
        )
        assert done.returncode == status, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
    assert f"{bad}, line 4: rules[0]: Object contains unknown field `colour`" in done.stderr


GOOD_ARGS = check("org-teams", "claims-billing-api", "keys-billing")


def _with(argv: list[str], option: str, value: str) -> list[str]:
    changed = list(argv)
    changed[changed.index(option) + 1] = value
    return changed


@pytest.mark.parametrize(
    ("option", "content", "says"),
    [
        (
            "--policy",
            "version: 1\nrules:\n  - name: x\n    match: {repository: a/b}\n    max_keys: 1\n"
            "    allow: [{provider: random, max_ttl: forever}]\n",
            ", line 6: rules[0].allow[0]: `max_ttl` 'forever' is not a duration",
        ),
        ("--policy", "version: 1\nrules: [\n", "line 3: not valid YAML"),
        ("--claims", "{not json", "not JSON"),
        ("--claims", '{"repository": "acme/x"}', "missing required field `repository_id`"),
        ("--claims", '["acme/x"]', "the claims must be a JSON object"),
        ("--keys", "DB: {provider: postgres}\n", "keys.DB.connection: this provider needs"),
        ("--keys", "DB: [\n", "Invalid key spec"),
    ],
)
def test_bad_input_exits_2_saying_what_is_wrong(
    tmp_path: Path,
    option: str,
    content: str,
    says: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "input"
    path.write_text(content)
    assert main(_with(GOOD_ARGS, option, str(path))) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert says in err
    assert err.startswith("runkeys policy check: ")


def test_an_unreadable_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for option in ("--policy", "--claims", "--keys"):
        assert main(_with(GOOD_ARGS, option, str(tmp_path / "missing"))) == 2
        assert "No such file or directory" in capsys.readouterr().err
    assert main([*GOOD_ARGS, "--max-ttl", "a while"]) == 2
    assert "--max-ttl: 'a while' is not a duration" in capsys.readouterr().err


def test_the_destination_options_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*GOOD_ARGS, "--environment", "ci-pr-1", "--repository-secrets"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_denial_the_page_shows_is_what_the_command_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown = re.search(r"A denial reads:\n\n```\n(.*?)\n```", DOC.read_text(), re.S)
    assert shown is not None
    assert main(check("main-only-rotation", "claims-branch", "keys-rotate")) == 1
    assert shown.group(1) in capsys.readouterr().out.splitlines()
