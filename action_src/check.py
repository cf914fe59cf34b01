"""`runkeys-check`: the `check` sub-action (`uses: OWNER/runkeys/check@v1`), the expiry
preflight of a job that reads runkeys' keys from secrets. Before the tests start it asks the
service about each named key, sending the SHA-256 fingerprint of the value in the step's
environment (never the value), and fails with one line per key that is retired, expired,
expiring within `min-remaining`, or not the live lease's value."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TextIO

from action_src.collaborators import lease_client
from action_src.inputs import ServiceSettings, get_duration, get_input, read_retries, read_service
from action_src.workflow import TITLE, Workflow
from runkeys.durations import format_duration
from runkeys.errors import ConfigError, RunkeysError
from runkeys.leases import fingerprint
from runkeys.names import secret_name_problem
from runkeys.preflight import MAX_KEYS, Cause, CheckAnswer, CheckRequest, KeyAnswer, KeyQuery
from runkeys.preflight import KeyStatus as Status
from runkeys.scrub import short

DEFAULT_MIN_REMAINING = "10m"
_SEPARATORS = re.compile(r"[\s,]+")
# What a retirement's cause reads as after "retired at HH:MM".
_CAUSE_TEXT = {
    Cause.PULL_REQUEST_CLOSED: "when its pull request was closed",
    Cause.TTL: "when its TTL ran out",
    Cause.POST_STEP: "by the post step of the job that minted it",
    Cause.OPERATOR: "by an operator",
    Cause.UNINSTALLED: "when the runkeys App was uninstalled",
    Cause.LEAKED: "because it leaked",
}


@dataclass(frozen=True)
class CheckPlan:
    service: ServiceSettings
    names: tuple[str, ...]
    min_remaining: timedelta
    run_attempt: int


@dataclass(frozen=True)
class Verdict:
    name: str
    ok: bool
    line: str  # "<NAME>: <what>", never a value


def read_names(raw: str) -> tuple[str, ...]:
    """Names one per line or comma-separated, each a secret name, each once."""
    names = tuple(name for name in _SEPARATORS.split(raw) if name)
    setting = "input `keys`"
    if not names:
        raise ConfigError(setting, "is empty", fix="name the keys to check, e.g. `API_TOKEN`")
    if len(names) > MAX_KEYS:
        raise ConfigError(setting, f"names {len(names)} keys; at most {MAX_KEYS} can be checked")
    for name in names:
        if problem := secret_name_problem(name):
            raise ConfigError(setting, f"{short(name, 60)!r}: {problem}")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(setting, f"names {', '.join(twice)} more than once")
    return names


def plan_check(environ: Mapping[str, str]) -> CheckPlan:
    service = read_service(environ)
    if service is None:
        raise ConfigError(
            "input `service-url`",
            "is empty; the check asks the runkeys service about the keys",
            fix="set `service-url` to the same service the runkeys step registers with",
        )
    attempt = environ.get("GITHUB_RUN_ATTEMPT", "").strip()
    return CheckPlan(
        service=service,
        names=read_names(get_input(environ, "keys")),
        min_remaining=get_duration(environ, "min-remaining", DEFAULT_MIN_REMAINING),
        run_attempt=int(attempt) if attempt.isdecimal() else 1,
    )


def values_of(names: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """Each named key's value from the step's environment; a missing one is named."""
    missing = [name for name in names if not environ.get(name)]
    if missing:
        raise ConfigError(
            f"key {', '.join(missing)}",
            "is not set (or empty) in this step's environment, so there is nothing to check",
            fix="give the job the secret, e.g. `env: "
            + f"{missing[0]}: ${{{{ secrets.{missing[0]} }}}}`"
            + ", and run the job in the environment runkeys wrote it to",
        )
    return {name: environ[name] for name in names}


def at(moment: datetime | None, now: datetime) -> str:
    """`10:02 UTC`, with the date when it is not today's."""
    if moment is None:
        return "an unknown time"
    if moment.date() == now.date():
        return moment.strftime("%H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _retirement(key: KeyAnswer, now: datetime, attempt: int) -> str:
    """`retired at 10:02 when run 123 completed; this is a re-run (attempt 2)` and the like."""
    when = f"retired at {at(key.retired_at, now)}"
    if key.cause is Cause.RUN_COMPLETED:
        text = f"{when} when run {key.run_id} completed"
        if key.run_attempt is not None and attempt > key.run_attempt:
            text += f"; this is a re-run (attempt {attempt})"
        return text
    said = _CAUSE_TEXT.get(key.cause) if key.cause is not None else None
    if said is None:
        return f"{when} ({short(key.reason or 'no reason recorded', 200)})"
    if key.cause in (Cause.OPERATOR, Cause.LEAKED) and key.reason:
        return f"{when} {said} ({short(key.reason, 200)})"
    return f"{when} {said}"


def verdict(key: KeyAnswer, plan: CheckPlan, now: datetime) -> Verdict:
    """Whether the job may use the key, and one line that says why (or how long it has)."""
    name = key.name
    match key.status:
        case Status.LIVE:
            remaining = timedelta(seconds=max(key.remaining_seconds or 0, 0))
            left = format_duration(remaining)
            if remaining < plan.min_remaining:
                limit = format_duration(plan.min_remaining)
                return Verdict(
                    name, False, f"{name}: expires in {left}, less than min-remaining {limit}"
                )
            return Verdict(
                name, True, f"{name}: live, expires in {left} (at {at(key.expires_at, now)})"
            )
        case Status.EXPIRED:
            return Verdict(name, False, f"{name}: expired at {at(key.expires_at, now)}")
        case Status.RETIRED:
            return Verdict(name, False, f"{name}: {_retirement(key, now, plan.run_attempt)}")
        case Status.STALE:
            return Verdict(name, False, f"{name}: {_stale(key, now, plan.run_attempt)}")
        case _:
            return Verdict(
                name,
                False,
                f"{name}: the runkeys service has no lease of this key for this run or this "
                "job's environment, nor one that holds this value",
            )


def _stale(key: KeyAnswer, now: datetime, attempt: int) -> str:
    head = "the value in this job is not the live lease's"
    if not key.value_known:
        return (
            f"{head}: it is no runkeys lease's; the key of run {key.run_id} "
            f"(attempt {key.run_attempt}) has another value"
        )
    minted = f"{head}: it was minted by run {key.run_id} (attempt {key.run_attempt})"
    if key.retired_at is None:
        return f"{minted}, and a newer key has been minted since"
    return f"{minted} and {_retirement(key, now, attempt)}"


def summary(verdicts: Sequence[Verdict], failed: bool) -> str:
    title = "keys not ready" if failed else "keys ready"
    rows = [
        f"| `{v.name}` | {'ok' if v.ok else 'fails'} | {_cell(v.line.partition(': ')[2])} |"
        for v in verdicts
    ]
    head = [f"## {TITLE} check: {title}", "", "| key | result | detail |", "|---|---|---|"]
    return "\n".join([*head, *rows, ""])


def _cell(text: str) -> str:
    """Plain text in a Markdown table cell: a ledger's reason may hold `|` or `<`."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def run_check(environ: Mapping[str, str], workflow: Workflow) -> int:
    plan = plan_check(environ)
    values = values_of(plan.names, environ)
    workflow.hide(values.values())  # nothing here prints them; should anything, it is masked
    client = lease_client(plan.service, workflow, read_retries(environ))
    request = CheckRequest(
        keys=[KeyQuery(name=name, fingerprint=fingerprint(value)) for name, value in values.items()]
    )
    answer = client.check(request)
    verdicts = _verdicts(answer, plan)
    failed = [v for v in verdicts if not v.ok]
    for found in verdicts:
        workflow.progress(found.line)
    for bad in failed:
        workflow.annotation("error", f"{TITLE} check: {bad.name}", bad.line)
    workflow.summary(summary(verdicts, bool(failed)))
    return 1 if failed else 0


def _verdicts(answer: CheckAnswer, plan: CheckPlan) -> list[Verdict]:
    by_name = {key.name: key for key in answer.keys}
    missing = [name for name in plan.names if name not in by_name]
    if missing:
        raise RunkeysError(
            f"the runkeys service did not answer about {', '.join(missing)}",
            fix="check that `service-url` points at a runkeys service of this version",
        )
    return [verdict(by_name[name], plan, answer.now) for name in plan.names]


def main(environ: Mapping[str, str] | None = None, stdout: TextIO | None = None) -> int:
    environ = os.environ if environ is None else environ
    workflow = Workflow(environ, stdout or sys.stdout)
    try:
        return run_check(environ, workflow)
    except RunkeysError as exc:
        return workflow.die(exc)
    except Exception as exc:  # a bug: no value is in an exception of this module
        return workflow.die(
            RunkeysError(
                f"the check failed unexpectedly: {short(f'{type(exc).__name__}: {exc}', 300)}",
                fix="re-run the job; if it fails again, report it with this message",
            )
        )


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
