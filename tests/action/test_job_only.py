"""The entry point with keys for this job only (no `environment`, no `repository-secrets`): no
GitHub at all. Masks, file formats, outputs, state, summary, warnings, and the error path."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from runkeys.providers.random_value import verify_token
from tests.action.harness import Run, Step

TWO_KEYS = (
    "API_TOKEN: {provider: random, ttl: 30m, lifetime: job}\n"
    "SIGNING_SECRET: {provider: random, format: base64url, bytes: 48, lifetime: run}\n"
)


@pytest.fixture
def step(tmp_path: Path) -> Step:
    return Step(tmp_path)


@pytest.fixture(scope="module")
def two_keys(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One run of the step with TWO_KEYS, which several tests read."""
    run = Step(tmp_path_factory.mktemp("two-keys")).run({"keys": TWO_KEYS})
    assert run.returncode == 0, [*run.lines, run.stderr]
    return run


def test_keys_are_masked_first_and_delivered_into_the_job(two_keys: Run) -> None:
    run = two_keys
    values = {name: run.env[name] for name in ("API_TOKEN", "SIGNING_SECRET")}
    assert verify_token(values["API_TOKEN"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{64}", values["SIGNING_SECRET"])  # 48 bytes, base64url
    run.assert_masked_first(values)
    run.assert_nowhere(values.values())
    # Step outputs: the same values, and keys-json without them.
    assert {k: run.outputs[k] for k in values} == values
    described = {item["name"]: item for item in run.keys_json()}
    assert described["API_TOKEN"]["lifetime"] == "job"
    assert described["API_TOKEN"]["scope"] == "job"
    assert described["SIGNING_SECRET"]["provider"] == "random"
    assert described["SIGNING_SECRET"]["expires_at"].endswith("Z")


def test_summary_is_a_table_without_values(two_keys: Run) -> None:
    run = two_keys
    assert "| `API_TOKEN` | random | this job only | job |" in run.summary
    assert "| `SIGNING_SECRET` | random | this job only | run |" in run.summary
    assert "No `service-url`" in run.summary
    run.assert_nowhere([run.env["API_TOKEN"], run.env["SIGNING_SECRET"]])


def test_without_a_service_run_and_pr_lifetimes_get_a_warning(two_keys: Run, step: Step) -> None:
    (warning,) = two_keys.annotations("warning")
    assert "`run` or `pr`" in warning[1]
    assert "TTL" in warning[1]
    only_job = step.run({"keys": "A: {provider: random, lifetime: job}"})
    assert only_job.annotations("warning") == []


def test_without_a_service_ttl_lifetimes_get_their_own_warning(step: Step) -> None:
    run = step.run({"keys": "A: {provider: random, ttl: 2h, lifetime: ttl}"})
    assert run.returncode == 0, [*run.lines, run.stderr]
    (warning,) = run.annotations("warning")
    assert "lifetime `ttl`" in warning[1]
    assert "only the provider's own expiry" in warning[1]
    assert "| `A` | random | this job only | ttl |" in run.summary
    assert json.loads(run.state["leases"])["leases"] == []  # the post step leaves it


def test_state_lists_the_job_keys_for_the_post_step_and_no_values(two_keys: Run) -> None:
    run = two_keys
    state = json.loads(run.state["leases"])
    assert [lease["key_name"] for lease in state["leases"]] == ["API_TOKEN"]
    assert state["leases"][0]["reference"].startswith("random:rk_")
    run.assert_nowhere(run.env.values())


def test_each_run_mints_new_values(two_keys: Run, step: Step) -> None:
    again = step.run({"keys": TWO_KEYS})
    assert again.env["API_TOKEN"] != two_keys.env["API_TOKEN"]
    assert again.env["SIGNING_SECRET"] != two_keys.env["SIGNING_SECRET"]


def test_an_unwritable_output_file_rolls_back_and_withdraws_the_environment(
    step: Step, tmp_path: Path
) -> None:
    (tmp_path / "not-a-file").mkdir()
    run = step.run({"keys": TWO_KEYS}, extra_env={"GITHUB_OUTPUT": str(tmp_path / "not-a-file")})
    assert run.returncode == 1
    (error,) = run.annotations("error")
    assert error[0] == "runkeys: Invalid configuration"
    assert "GITHUB_OUTPUT" in error[1]
    assert any("Rolling back 2 minted key(s)" in w[1] for w in run.annotations("warning"))
    assert run.env == {}  # GITHUB_ENV was written, then cut back
    assert json.loads(run.state["leases"])["leases"] == []  # nothing left for the post step
    assert "GITHUB_OUTPUT" in run.summary


def test_the_cause_is_in_the_summary_and_the_annotation_alike(step: Step) -> None:
    run = step.run({"keys": "A: {provider: random, bytes: 8}"})
    (error,) = run.annotations("error")
    assert "keys.A.bytes: must be between 16 and 1024, not 8" in error[1]
    assert "keys.A.bytes: must be between 16 and 1024, not 8" in run.summary
    assert error[0] == "runkeys: Invalid key spec"


# Run as the entry point runs, then names the heavy modules the process had imported.
IMPORTS_PROBE = """
import os, sys
from action_src.main import main
code = main(os.environ)
print("IMPORTED " + ",".join(sorted(m for m in sys.argv[1:] if m in sys.modules)), file=sys.stderr)
sys.exit(code)
"""


def test_random_job_only_keys_load_no_database_driver(step: Step) -> None:
    """The container's start is mostly imports (bench/image.py): a step that names no database
    must not pay for libpq, PyMySQL or redis-py. PyYAML, which every step needs, shows that the
    probe sees what was imported."""

    def probe(_argv: list[str], _env: dict[str, str]) -> list[str]:
        return [sys.executable, "-c", IMPORTS_PROBE, "psycopg", "pymysql", "redis", "yaml"]

    run = step.run(
        {"keys": "A: {provider: random, lifetime: job}"},
        extra_env={"RUNKEYS_CONNECTION_MAIN": "postgresql://runkeys@127.0.0.1:5432/test"},
        wrap=probe,
    )
    assert run.returncode == 0, run.stderr
    assert "IMPORTED yaml\n" in run.stderr
