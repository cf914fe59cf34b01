"""The `check` sub-action end to end: the real runkeys step (its console script, local mode)
mints into an environment and registers with the real service; a consumer job's `check` step
(the `runkeys-check` console script, with the environment's secret in its env and a token whose
`environment` claim names it) asks the service. It passes on live keys and prints each one's
time left; it fails with one line per key, an annotation and a step summary on a re-run after
the run completed (signed workflow_run delivery, a worker cycle), past the TTL and near it (the
service's clock moved), and on a stale value from an older run. No value in anything it wrote."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from action_src.check import main
from handler.worker import RevocationWorker
from tests.action.conftest import RUN_ID, GitHub
from tests.action.harness import CHECK, MASK, Run
from tests.action.service import Service
from tests.almost import last_char_changed
from tests.service import kit

ENVIRONMENT = "ci-integration"
KEYS = (
    "API_TOKEN: {provider: random, ttl: 30m, lifetime: run}\n"
    "DB_PASSWORD: {provider: random, format: hex, ttl: 2h, lifetime: run}\n"
)
NAMES = ("API_TOKEN", "DB_PASSWORD")


class Clock:
    """The service's clock, moved by the test (the only thing patched)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def clock(service: Service) -> Iterator[Clock]:
    moved = Clock()
    running = service.app.extensions["runkeys"]
    real, running.clock = running.clock, moved
    yield moved
    running.clock = real


def mint(github: GitHub, run_id: int = RUN_ID) -> dict[str, str]:
    """The runkeys step of `run_id`: mints into ENVIRONMENT; what the environment now holds."""
    extra: dict[str, str] = {}
    if run_id != RUN_ID:
        github.sandbox.add_workflow_run(github.repo, run_id=run_id)
        extra = github.sandbox.runner_oidc_env(github.sandbox.run_claims(github.repo, run_id))
        extra["GITHUB_RUN_ID"] = str(run_id)
    inputs = github.app_inputs(keys=KEYS, environment=ENVIRONMENT)
    run = github.step.run(inputs, extra_env=extra)
    assert run.returncode == 0, [*run.lines, run.stderr]
    held = {name: github.secret(name, ENVIRONMENT) for name in NAMES}
    assert all(held.values())
    return {name: str(value) for name, value in held.items()}


def check(
    github: GitHub,
    held: dict[str, str],
    *,
    run_id: int = RUN_ID,
    attempt: int = 1,
    min_remaining: str = "15m",
) -> Run:
    """A consumer job of `run_id` (attempt `attempt`) in ENVIRONMENT: `env:` from its secrets,
    `permissions: id-token: write`, and the check step."""
    claims = github.sandbox.run_claims(github.repo, run_id, environment=ENVIRONMENT)
    claims = replace(claims, run_attempt=attempt)
    env = {
        **held,
        **github.sandbox.runner_oidc_env(claims),
        "GITHUB_RUN_ID": str(run_id),
        "GITHUB_RUN_ATTEMPT": str(attempt),
    }
    inputs = {"keys": "\n".join(held), "min-remaining": min_remaining}
    run = github.step.run(inputs, extra_env=env, entry=CHECK)
    assert_no_value(run, held)
    return run


def assert_no_value(run: Run, held: dict[str, str]) -> None:
    """No value in any form in stdout (but masks), stderr, the summary, the state."""
    run.assert_nowhere(held.values())
    for form in (form for value in held.values() for form in (value, value[:-1])):
        assert not [line for line in run.lines if form in line and not line.startswith(MASK)]
    assert run.env == {}  # the check exports nothing
    assert run.outputs == {}


def hhmm(before: datetime, after: datetime) -> set[str]:
    return {f"{before:%H:%M} UTC", f"{after:%H:%M} UTC"}


def complete(github: GitHub, service: Service, run_id: int = RUN_ID) -> tuple[datetime, datetime]:
    """The run completes: GitHub's signed delivery, then a worker cycle. When it was."""
    payload = kit.workflow_run_completed(
        github.repo.id, github.repo.full_name, run_id, 1, github.installation.id
    )
    before = service.app.extensions["runkeys"].clock()
    answer = github.sandbox.deliver(
        f"{service.url}/webhook", "workflow_run", payload, app=github.app
    )
    assert answer.status_code in (200, 202), answer.text
    after = service.app.extensions["runkeys"].clock()
    RevocationWorker(service.app.extensions["runkeys"]).drain()
    return before, after


def test_live_keys_pass_and_print_their_time_left(github: GitHub, service: Service) -> None:
    held = mint(github)
    run = check(github, held)
    assert run.returncode == 0, [*run.lines, run.stderr]
    assert service.faults.statuses("/v1/leases/check") == [200]
    left = [line for line in run.lines if not line.startswith(MASK)]
    assert re.fullmatch(r"API_TOKEN: live, expires in (29m\d+s|30m) \(at \d\d:\d\d UTC\)", left[0])
    assert re.fullmatch(
        r"DB_PASSWORD: live, expires in (1h59m\d+s|2h) \(at \d\d:\d\d UTC\)", left[1]
    )
    assert run.annotations("error") == []
    assert "keys ready" in run.summary
    assert "`API_TOKEN` | ok" in run.summary


def test_a_re_run_after_the_run_completed_fails_naming_the_completion(
    github: GitHub, service: Service
) -> None:
    held = mint(github)
    assert check(github, held).returncode == 0
    before, after = complete(github, service)
    run = check(github, held, attempt=2)
    assert run.returncode == 1
    errors = run.annotations("error")
    assert [title for title, _ in errors] == [
        "runkeys check: API_TOKEN",
        "runkeys check: DB_PASSWORD",
    ]
    for name, (_, message) in zip(NAMES, errors, strict=True):
        assert message in {
            f"{name}: retired at {when} when run {RUN_ID} completed; this is a re-run (attempt 2)"
            for when in hhmm(before, after)
        }, message
        assert message in run.lines  # the same line in the log
    assert "keys not ready" in run.summary
    assert f"when run {RUN_ID} completed; this is a re-run (attempt 2)" in run.summary


def test_past_the_ttl_the_key_has_expired(github: GitHub, service: Service, clock: Clock) -> None:
    held = mint(github)
    issued = datetime.now(UTC)
    clock.offset = timedelta(minutes=31)
    run = check(github, held)
    assert run.returncode == 1
    ((title, message),) = run.annotations("error")
    assert title == "runkeys check: API_TOKEN"
    expiry = issued + timedelta(minutes=30)
    assert message in {
        f"API_TOKEN: expired at {when}" for when in hhmm(expiry - timedelta(minutes=1), expiry)
    }
    # The other key (2h) has 1h29m left, more than 15m: listed as live.
    assert any(line.startswith("DB_PASSWORD: live, expires in 1h2") for line in run.lines)


def test_a_key_expiring_within_min_remaining_fails(
    github: GitHub, service: Service, clock: Clock
) -> None:
    held = mint(github)
    clock.offset = timedelta(minutes=26)  # API_TOKEN: under 4m left
    run = check(github, held, min_remaining="15m")
    assert run.returncode == 1
    ((_, message),) = run.annotations("error")
    assert re.fullmatch(r"API_TOKEN: expires in 3m\d+s, less than min-remaining 15m", message)
    # With less asked of it, the same key passes.
    assert check(github, held, min_remaining="2m").returncode == 0


def test_a_stale_value_from_an_older_run_fails_naming_that_run(
    github: GitHub, service: Service
) -> None:
    old = mint(github)
    before, after = complete(github, service)
    new = mint(github, run_id=RUN_ID + 1)
    assert new != old
    # A job of the new run that read the environment's secrets before they were written again.
    run = check(github, old, run_id=RUN_ID + 1)
    assert run.returncode == 1
    messages = [message for _, message in run.annotations("error")]
    assert messages[0] in {
        "API_TOKEN: the value in this job is not the live lease's: it was minted by run "
        f"{RUN_ID} (attempt 1) and retired at {when} when run {RUN_ID} completed"
        for when in hhmm(before, after)
    }, messages
    assert len(messages) == 2
    assert check(github, new, run_id=RUN_ID + 1).returncode == 0


def test_a_value_that_is_no_leases_is_stale(github: GitHub, service: Service) -> None:
    held = mint(github)
    wrong = {**held, "API_TOKEN": last_char_changed(held["API_TOKEN"])}
    run = check(github, wrong)
    assert run.returncode == 1
    ((_, message),) = run.annotations("error")
    assert message == (
        "API_TOKEN: the value in this job is not the live lease's: it is no runkeys lease's; "
        f"the key of run {RUN_ID} (attempt 1) has another value"
    )


# --- bad input, before the service is asked ---------------------------------------------------


def run_in_process(github: GitHub, inputs: dict[str, str], **env: str) -> tuple[int, str]:
    environ = {
        **github.step.base_env,
        **{f"INPUT_{name.upper()}": value for name, value in inputs.items()},
        **env,
    }
    out = io.StringIO()
    return main(environ, out), out.getvalue()


@pytest.mark.parametrize(
    ("inputs", "env", "said"),
    [
        (
            {"keys": "API_TOKEN"},
            {},
            "key API_TOKEN: is not set (or empty) in this step's environment",
        ),
        ({"keys": "API_TOKEN, DB_URL"}, {"API_TOKEN": "x" * 30}, "key DB_URL: is not set"),
        ({"keys": ""}, {}, "input `keys`: is empty"),
        ({"keys": "API-TOKEN"}, {}, "'API-TOKEN': a secret name may contain only"),
        ({"keys": "A\nA"}, {"A": "x" * 30}, "names A more than once"),
        (
            {"keys": "A", "min-remaining": "15"},
            {"A": "x" * 30},
            "input `min-remaining`: '15' is not",
        ),
        ({"keys": "A", "service-url": ""}, {"A": "x" * 30}, "input `service-url`: is empty"),
        ({"keys": "A", "service-url": "http://runkeys.example"}, {"A": "x" * 30}, "plain http://"),
    ],
    ids=["missing", "one-missing", "no-keys", "bad-name", "twice", "duration", "no-url", "http"],
)
def test_bad_input_is_a_clear_error_and_asks_nothing(
    github: GitHub,
    service: Service,
    inputs: dict[str, str],
    env: dict[str, str],
    said: str,
) -> None:
    status, out = run_in_process(github, inputs, **env)
    assert status == 1
    assert said in out.replace("%0A", "\n"), out
    assert service.faults.statuses("/v1/leases/check") == []
    for value in env.values():
        assert value not in out.replace(MASK + value, "")
