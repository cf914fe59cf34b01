"""The pytest plugin `make mutate` loads in every run of a group's tests (scripts/
mutation_report.py puts it on the path). Two jobs:

- where the time goes: one JSON line per pytest session (the mutant under test, or mutmut's
  stats and clean runs) with its wall time, its exit status and each test's setup, call and
  teardown seconds, in `$RUNKEYS_MUTATION_TIMING`;
- a mutant's tests in the order most likely to fail first: those that failed on other mutants
  of the same function, then on the group's other functions, then the quickest. mutmut stops
  a mutant at its first failing test (`-x`) but hands pytest its tests in no particular order;
  the verdicts do not depend on the order, only the time to reach them;
- a test that hangs under a mutant stops at 20 times its own time (10 s at least; pytest-timeout)
  and the mutant is recorded as a timeout, as mutmut's own limit would have it: that limit is
  15 times all the mutant's tests' time, so a hang in one test of hundreds waited for all of
  them (50 to 70 s per hanging scrub mutant).

Without `$RUNKEYS_MUTATION_TIMING` the plugin does nothing."""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

# mutmut's exit status for a mutant that timed out
TIMEOUT_STATUS = 36
HANG_FACTOR, HANG_FLOOR = 20, 10.0

_session = {"started": 0.0}
_tests: defaultdict[str, float] = defaultdict(float)
_failed: list[str] = []
_hung: list[str] = []


def _mutant() -> str:
    return os.environ.get("MUTANT_UNDER_TEST", "")


def _function(mutant: str) -> str:
    return mutant.partition("__mutmut_")[0]


def _file() -> Path | None:
    path = os.environ.get("RUNKEYS_MUTATION_TIMING")
    return Path(path) if path else None


def pytest_sessionstart(session: Any) -> None:
    _session["started"] = time.monotonic()
    _tests.clear()
    _failed.clear()
    _hung.clear()


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    timing = _file()
    mutant = _mutant()
    if timing is None or "__mutmut_" not in mutant:
        return
    kills = timing.with_suffix(".kills")
    here: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    if kills.exists():
        for line in kills.read_text().splitlines():
            function, _, test = line.partition("\t")
            anywhere[test] += 1
            if function == _function(mutant):
                here[test] += 1
    # mutmut's record of each test's time, in the directory it runs the tests from
    stats = Path("mutmut-stats.json")
    took: dict[str, float] = {}
    if stats.exists():
        took = json.loads(stats.read_text()).get("duration_by_test", {})
    items.sort(
        key=lambda item: (-here[item.nodeid], -anywhere[item.nodeid], took.get(item.nodeid, 0.0))
    )
    for item in items:
        if item.get_closest_marker("timeout") is None:  # a test's own limit stands
            limit = max(HANG_FLOOR, HANG_FACTOR * took.get(item.nodeid, 0.0))
            item.add_marker(pytest.mark.timeout(limit))


def pytest_runtest_logreport(report: Any) -> None:
    _tests[report.nodeid] += report.duration
    if report.failed:
        _failed.append(report.nodeid)
        # pytest-timeout's failure: "Failed: Timeout (>10.0s) from pytest-timeout."
        if "from pytest-timeout" in str(report.longrepr):
            _hung.append(report.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    _record(session, exitstatus)
    if _hung and "__mutmut_" in _mutant():
        session.exitstatus = TIMEOUT_STATUS


def _record(session: Any, exitstatus: int) -> None:
    timing = _file()
    if timing is None:
        return
    mutant = _mutant()
    line = {
        "mutant": mutant,
        "seconds": round(time.monotonic() - _session["started"], 3),
        "exit": TIMEOUT_STATUS if _hung else int(exitstatus),
        "tests": {name: round(seconds, 3) for name, seconds in _tests.items()},
    }
    # One write of one line each: the workers run side by side and append to the same files.
    with timing.open("a") as file:
        file.write(json.dumps(line) + "\n")
    if "__mutmut_" in mutant and _failed and not _hung:
        with timing.with_suffix(".kills").open("a") as file:
            file.write(f"{_function(mutant)}\t{_failed[0]}\n")
