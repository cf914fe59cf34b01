"""The `check` sub-action's one line per key, from answers written out here (the service's side
is tests/service/test_check_api.py; end to end, tests/action/test_check.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from action_src.check import CheckPlan, read_names, verdict
from action_src.inputs import ServiceSettings
from runkeys.errors import ConfigError
from runkeys.preflight import Cause, KeyAnswer, KeyStatus

NOW = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)
PLAN = CheckPlan(
    service=ServiceSettings("https://runkeys.example", "https://runkeys.example"),
    names=("API_TOKEN",),
    min_remaining=timedelta(minutes=15),
    run_attempt=2,
)


def retired(cause: Cause, reason: str, **more: object) -> KeyAnswer:
    fields: dict[str, object] = {
        "name": "API_TOKEN",
        "status": KeyStatus.RETIRED,
        "retired_at": datetime(2026, 3, 4, 10, 2, tzinfo=UTC),
        "cause": cause,
        "reason": reason,
        "run_id": 123,
        "run_attempt": 1,
        **more,
    }
    return KeyAnswer(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "line"),
    [
        (
            retired(Cause.RUN_COMPLETED, "webhook workflow_run.completed delivery 1"),
            "API_TOKEN: retired at 10:02 UTC when run 123 completed; this is a re-run (attempt 2)",
        ),
        (
            retired(Cause.RUN_COMPLETED, "sweeper", run_attempt=2),
            "API_TOKEN: retired at 10:02 UTC when run 123 completed",
        ),
        (
            retired(Cause.PULL_REQUEST_CLOSED, "webhook pull_request.closed delivery 1"),
            "API_TOKEN: retired at 10:02 UTC when its pull request was closed",
        ),
        (
            retired(Cause.POST_STEP, "post-step: retired by the job"),
            "API_TOKEN: retired at 10:02 UTC by the post step of the job that minted it",
        ),
        (
            retired(Cause.OPERATOR, "operator alice: rotated"),
            "API_TOKEN: retired at 10:02 UTC by an operator (operator alice: rotated)",
        ),
        (
            retired(Cause.LEAKED, "leaked_in_logs: job test step 3 line 12"),
            "API_TOKEN: retired at 10:02 UTC because it leaked "
            "(leaked_in_logs: job test step 3 line 12)",
        ),
        (
            retired(Cause.OTHER, "a reason from a later version"),
            "API_TOKEN: retired at 10:02 UTC (a reason from a later version)",
        ),
        (
            retired(Cause.OTHER, "x", retired_at=datetime(2026, 3, 3, 23, 59, tzinfo=UTC)),
            "API_TOKEN: retired at 2026-03-03 23:59 UTC (x)",
        ),
        (
            KeyAnswer(
                name="API_TOKEN",
                status=KeyStatus.EXPIRED,
                expires_at=datetime(2026, 3, 4, 10, 29, tzinfo=UTC),
            ),
            "API_TOKEN: expired at 10:29 UTC",
        ),
        (
            KeyAnswer(name="API_TOKEN", status=KeyStatus.LIVE, remaining_seconds=14 * 60 + 59),
            "API_TOKEN: expires in 14m59s, less than min-remaining 15m",
        ),
        (
            KeyAnswer(
                name="API_TOKEN",
                status=KeyStatus.STALE,
                run_id=120,
                run_attempt=1,
                value_known=True,
            ),
            "API_TOKEN: the value in this job is not the live lease's: it was minted by run 120 "
            "(attempt 1), and a newer key has been minted since",
        ),
        (
            KeyAnswer(name="API_TOKEN", status=KeyStatus.UNKNOWN),
            "API_TOKEN: the runkeys service has no lease of this key for this run or this job's "
            "environment, nor one that holds this value",
        ),
    ],
)
def test_a_key_that_may_not_be_used_fails_with_its_reason(answer: KeyAnswer, line: str) -> None:
    found = verdict(answer, PLAN, NOW)
    assert (found.ok, found.line) == (False, line)


def test_a_key_with_exactly_min_remaining_left_passes() -> None:
    answer = KeyAnswer(
        name="API_TOKEN",
        status=KeyStatus.LIVE,
        remaining_seconds=15 * 60,
        expires_at=NOW + timedelta(minutes=15),
    )
    found = verdict(answer, PLAN, NOW)
    assert (found.ok, found.line) == (True, "API_TOKEN: live, expires in 15m (at 10:45 UTC)")


@pytest.mark.parametrize(
    ("raw", "names"),
    [("API_TOKEN", ("API_TOKEN",)), ("A, B\nC,\n", ("A", "B", "C")), (" A ,B ", ("A", "B"))],
)
def test_names_one_per_line_or_comma_separated(raw: str, names: tuple[str, ...]) -> None:
    assert read_names(raw) == names


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (", \n", "is empty"),
        (",".join(f"K{i}" for i in range(101)), "names 101 keys; at most 100"),
        ("GITHUB_TOKEN", "reserved"),
        ("A;B", "may contain only letters"),
    ],
)
def test_bad_names_are_refused(raw: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        read_names(raw)
