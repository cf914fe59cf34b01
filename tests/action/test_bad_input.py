"""Every bad spec and bad setting fails the step the same way: one `::error` annotation with a
title and no file, the same text in the step summary, exit 1, and nothing minted or written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runkeys_sandbox.server.sandbox import Sandbox
from tests.action.harness import Run, Step

MALFORMED_SPECS = [
    ("A: {provider: random, ttl: 30x}", "keys.A.ttl"),
    ("A: {provider: random, ttl: 0m}", "keys.A.ttl"),
    ("A: {provider: random, ttl: 48h}", "keys.A.ttl"),
    ("A: {provider: random, lifetime: forever}", "keys.A.lifetime"),
    ("A: {provider: random, lifetime: pr}", "keys.A.lifetime"),  # a push, not a pull request
    ("A: {provider: nope}", "keys.A.provider"),
    ("A: {ttl: 1h}", "keys.A.provider"),
    ("A: {provider: random, colour: red}", "keys.A.colour"),
    ("A: {provider: random, bytes: 8}", "keys.A.bytes"),
    ("A: {provider: random, bytes: many}", "keys.A.bytes"),
    ("A: {provider: random, format: rot13}", "keys.A.format"),
    ("A: {provider: random, format: hex, prefix: ab_}", "keys.A.prefix"),
    ("A: {provider: random, prefix: NOPE}", "keys.A.prefix"),
    ("A: {provider: random, connection: db}", "keys.A.connection"),
    ("GITHUB_TOKEN: {provider: random}", "keys.GITHUB_TOKEN"),
    ("RUNKEYS_X: {provider: random}", "keys.RUNKEYS_X"),
    ("PATH: {provider: random}", "keys.PATH"),
    ("1ABC: {provider: random}", "keys.1ABC"),
    ("'BAD-NAME': {provider: random}", "keys.BAD-NAME"),
    ("A: random", "keys.A"),
    ("A: {provider: random}\na: {provider: random}", "keys.a"),
    ("A: {provider: random}\nA: {provider: random}", "keys"),  # duplicate YAML key
    ("[A, B]", "keys"),
    ("just text", "keys"),
    ("A: {provider: random\n", "keys"),  # broken YAML
    ("123: {provider: random}", "keys.123"),
]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """One GitHub for the module: an App installed on the step's repository, so that any call
    the step made would be answered and recorded."""
    with Sandbox() as sandbox:
        sandbox.install(sandbox.add_app(), [sandbox.add_repository("octo/app")])
        yield sandbox


@pytest.fixture
def step(tmp_path: Path, sandbox: Sandbox) -> Iterator[Step]:
    step = Step(tmp_path)
    step.base_env["GITHUB_API_URL"] = sandbox.url
    app = next(iter(sandbox.world.apps.values()))
    step.base_env["INPUT_APP-ID"] = str(app.id)
    step.base_env["INPUT_PRIVATE-KEY"] = app.private_key_pem
    sandbox.clear_requests()
    yield step
    assert sandbox.requests == [], "a step that failed validation called GitHub"


def assert_failed_cleanly(
    run: Run, title: str, *expected: str, connection_password: str | None = None
) -> str:
    """Failed with one annotation and wrote nothing. With a connection in the step's env, its
    masks are the only ones (the action masks connections before anything else)."""
    assert run.returncode == 1, run.lines
    (error,) = run.annotations("error")
    assert error[0] == title
    for text in expected:
        assert text in error[1], error[1]
        assert text in run.summary
    assert not any(line.startswith("::error file=") for line in run.lines)
    if connection_password is None:
        assert run.masks == []  # nothing was minted
    else:
        assert connection_password in run.masks
        masks = [line for line in run.lines if line.startswith("::add-mask::")]
        assert run.lines[: len(masks)] == masks  # the connection's masks came first
    assert run.env == {}
    assert run.outputs == {}
    assert run.state == {}
    assert run.stderr == ""
    return error[1]


@pytest.mark.parametrize(("keys", "where"), MALFORMED_SPECS)
def test_a_malformed_spec_fails_before_anything_is_minted(
    step: Step, keys: str, where: str
) -> None:
    run = step.run(
        {"keys": keys, "environment": "ci-run-{run_id}", "app-id": "1", "private-key": "not used"}
    )
    message = assert_failed_cleanly(run, "runkeys: Invalid key spec", where)
    assert "Nothing was minted." in message


def test_every_problem_is_reported_at_once(step: Step) -> None:
    run = step.run({"keys": "A: {provider: random, ttl: 1y}\nB: {provider: nope}\n"})
    assert_failed_cleanly(run, "runkeys: Invalid key spec", "keys.A.ttl", "keys.B.provider")


BAD_SETTINGS = [
    ({"keys": ""}, "input `keys`"),
    ({"environment": "ci", "repository-secrets": "true"}, "input `repository-secrets`"),
    ({"repository-secrets": "yes"}, "input `repository-secrets`"),
    ({"environment": "ci-pr-{pr}"}, "{pr} needs"),
    ({"environment": "ci-{branch}"}, "unknown placeholder {branch}"),
    # As the service refuses them: str.format would give ci-'4242' and ci-xxxxxxxx4242.
    ({"environment": "ci-{run_id!r}"}, "no conversion or format"),
    ({"environment": "ci-{run_id:x>12}"}, "no conversion or format"),
    ({"environment": "ci-{pr[0]}"}, "unknown placeholder {pr[0]}"),
    ({"environment": "ci-{run_id.real}"}, "unknown placeholder {run_id.real}"),
    ({"environment": "ci-{"}, "input `environment`"),
    ({"environment": "x" * 300}, "at most 255"),
    ({"environment": "ci", "app-id": "", "private-key": ""}, "needs GitHub credentials"),
    ({"repository-secrets": "true", "app-id": "", "private-key": ""}, "needs GitHub credentials"),
    ({"app-id": "12", "private-key": ""}, "input `private-key`"),
    ({"app-id": "", "private-key": "k"}, "input `app-id`"),
    ({"github-token": "t"}, "input `github-token`"),
    ({"default-ttl": "2d"}, "longer than `max-ttl`"),
    ({"max-ttl": "soon"}, "input `max-ttl`"),
    ({"service-url": "ftp://x"}, "input `service-url`"),
    ({"service-url": "https://runkeys.example"}, "id-token: write"),
]


@pytest.mark.parametrize(("inputs", "expected"), BAD_SETTINGS)
def test_a_bad_setting_fails_before_anything_is_minted(
    step: Step, inputs: dict[str, str], expected: str
) -> None:
    run = step.run({"keys": "A: {provider: random}", **inputs})
    assert_failed_cleanly(run, "runkeys: Invalid configuration", expected)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("..", "'..': an environment name cannot be `.` or `..`"),
        (".", "'.': an environment name cannot be `.` or `..`"),
        ("ci-{run_id}/..", "'ci-4242/..': an environment name cannot be `.` or `..`"),
        ("../{run_id}", "'../4242': an environment name cannot be `.` or `..`"),
        ("%2e%2e", "'%2e%2e': an environment name cannot contain a percent-escape"),
        ("ci%2F{run_id}", "'ci%2F4242': an environment name cannot contain a percent-escape"),
        ("ci\nprod", "'ci\\nprod': an environment name cannot contain the control"),
        ("ci\x85prod", "'ci\\x85prod': an environment name cannot contain the control"),
        ("ci//{run_id}", "'ci//4242': an environment name cannot start or end with `/`"),
    ],
)
def test_a_hostile_environment_name_fails_before_anything_is_minted(
    step: Step, template: str, expected: str
) -> None:
    """The template is filled, then checked: nothing reaches GitHub (the fixture checks)."""
    run = step.run({"keys": "A: {provider: random}", "environment": template})
    assert_failed_cleanly(run, "runkeys: Invalid configuration", "input `environment`", expected)


def test_a_malformed_connection_variable_is_refused(step: Step) -> None:
    run = step.run({"keys": "A: {provider: random}"}, extra_env={"RUNKEYS_CONNECTION_": "x"})
    assert_failed_cleanly(run, "runkeys: Invalid configuration", "RUNKEYS_CONNECTION_")


def test_outside_a_job_the_step_says_so(step: Step) -> None:
    run = step.run({"keys": "A: {provider: random}"}, extra_env={"GITHUB_ENV": ""})
    assert_failed_cleanly(run, "runkeys: Invalid configuration", "GITHUB_ENV: is not set")


def test_a_pr_lifetime_on_a_pull_request_is_fine(step: Step) -> None:
    step.pull_request_event(17)
    run = step.run({"keys": "A: {provider: random, lifetime: pr}"})
    assert run.returncode == 0, run.lines


# The step's connection allows `app_ro` only; nothing listens at its port, and nothing is asked.
NARROW_DB = "postgresql://runkeys_admin:Adm1n-pw@127.0.0.1:9/app?runkeys_grants=app_ro"


@pytest.mark.parametrize(
    ("grant", "expected"),
    [
        ("app_owner", "'app_owner' is not among the roles RUNKEYS_CONNECTION_CI_DB allows"),
        ("app_ro2", "'app_ro2' is not among the roles RUNKEYS_CONNECTION_CI_DB allows"),
        ("pg_execute_server_program", "PostgreSQL's predefined roles"),
        ("runkeys_admin", "the connection's own account"),
    ],
)
def test_a_forbidden_grant_fails_before_anything_is_minted(
    step: Step, grant: str, expected: str
) -> None:
    keys = (
        f"A: {{provider: random}}\nB: {{provider: postgres, connection: ci_db, grant: [{grant}]}}"
    )
    run = step.run({"keys": keys}, extra_env={"RUNKEYS_CONNECTION_CI_DB": NARROW_DB})
    message = assert_failed_cleanly(
        run, "runkeys: Invalid key spec", "keys.B.grant", expected, connection_password="Adm1n-pw"
    )
    assert "Adm1n-pw" not in "\n".join(run.lines[len(run.masks) :]) + run.summary
    assert "Nothing was minted." in message


def test_a_misspelt_allow_list_fails_the_step(step: Step) -> None:
    url = NARROW_DB.replace("runkeys_grants", "runkeys_grant")
    run = step.run({"keys": "A: {provider: random}"}, extra_env={"RUNKEYS_CONNECTION_CI_DB": url})
    assert_failed_cleanly(
        run,
        "runkeys: Invalid configuration",
        "unknown runkeys setting",
        connection_password="Adm1n-pw",
    )
    assert "Adm1n-pw" not in "\n".join(run.lines[len(run.masks) :]) + run.summary
