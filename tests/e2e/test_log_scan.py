"""Issue 18, item 2, end to end on each ledger engine: a pull request's `e2e` job, which reads
the keys as secrets, prints its token base64-encoded and hex-encoded and its database key's
password alone. The runner masks the first (it knows base64 forms of a secret); hex and a part
of a key that is no secret in that job it cannot mask. When
the run completes, the served service scans the run's logs, finds both with job, step and line,
retires the `pr` keys there and then (the pull request is still open), and deletes the logs
(`RUNKEYS_DELETE_LEAKED_LOGS=true`). Every other e2e run's logs are scanned too, and found clean
(`World.assert_log_scans`, at the end of each module)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.e2e.pull_request import PullRequest
from tests.e2e.world import World
from tests.service.served import wait_for

pytestmark = pytest.mark.slow


def leaked_in_logs(world: World, lease_id: str) -> list[str]:
    """The details of the lease's `leaked_in_logs` events, from `runkeys leases --json`."""
    row = json.loads(world.command("leases", "--json", "--lease", lease_id).stdout)
    return [event["detail"] for event in row["events"] if event["action"] == "leaked_in_logs"]


def test_a_key_printed_where_masking_does_not_reach_is_found_retired_and_its_logs_deleted(
    world: World,
) -> None:
    pr = PullRequest.open(world, "leaky")
    issued = pr.mint("pr")
    token = next(key for key in issued.keys if key.provider == "random")
    database = next(key for key in issued.keys if key.provider == "postgres")
    assert database.password is not None
    encoded = base64.b64encode(token.value.encode()).decode()
    pr.tests_print += [
        "pytest -q",
        f"debug: {encoded}",  # masked: not found
        f"dump: {token.value.encode().hex()}",
        f"pw={database.password}",
    ]
    world.planted.add(pr.run.id)
    # The run's completion retires no `pr` key; the scan of its logs retires both.
    assert pr.complete() == {"outcome": "queued", "queued": 0}
    pr.assert_retired(issued.keys)
    leases = world.leases(pr.repo.full_name)
    for key in issued.keys:
        assert leases[key.lease_id]["retire_reason"].startswith("leaked_in_logs: "), key.name
    where = f"in the logs of run {pr.run.id} attempt 1: job 'e2e', step 'Run tests'"
    assert leaked_in_logs(world, token.lease_id) == [
        f"{token.name} (its value, hex) {where}, line 3"
    ]
    assert leaked_in_logs(world, database.lease_id) == [
        f"{database.name} (its part PASSWORD, as is) {where}, line 4"
    ]
    token_history = world.history(token.lease_id)
    assert ("log-scan", "leaked_in_logs") in token_history
    assert ("log-scan", "logs_deleted") in token_history
    wait_for(lambda: any(logs.deleted for logs in pr.run.logs.values()), what="the logs deleted")
