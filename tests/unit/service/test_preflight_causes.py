"""The check's `cause`, read from the retirement reasons the service writes (each written out
here as the ledger holds it) and from reasons it does not know, which still say `other`."""

from __future__ import annotations

import pytest

from handler.preflight import cause_of
from runkeys.preflight import Cause


@pytest.mark.parametrize(
    ("reason", "cause"),
    [
        (
            "webhook workflow_run.completed delivery 72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "run_completed",
        ),
        ("sweeper: GitHub reports run 30433642 attempt 2 completed", "run_completed"),
        (
            "webhook pull_request.closed delivery 72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "pull_request_closed",
        ),
        ("sweeper: ttl", "ttl"),
        ("post-step: retired by the job", "post_step"),
        ("post step: retire job keys of request Zm9vYmFy", "post_step"),
        ("operator alice: rotated after the incident", "operator"),
        ("webhook installation.deleted delivery 1", "uninstalled"),
        ("webhook installation_repositories.removed delivery 1", "uninstalled"),
        (
            "leaked: secret scanning alert https://github.com/o/r/security/secret-scanning/1",
            "leaked",
        ),
        ("leaked_in_logs: job test step 3 line 12", "leaked"),
        ("cleanup", "other"),
        ("", "other"),
        (None, "other"),
        # Almost right: the words elsewhere than where the service writes them.
        ("not a webhook workflow_run.completed", "other"),
        ("the operator said so", "other"),
    ],
)
def test_the_cause_of_each_reason(reason: str | None, cause: str) -> None:
    assert cause_of(reason) is Cause(cause)
