"""The decision record (issue 15, item 5): who asked, what was decided by which rule, for which
keys — names and providers, never a value — as one JSON line."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from handler.policy import Destination, record
from tests.policy.kit import claims, decide

KEYS = (
    "TOKEN: {provider: random, prefix: skzq_, ttl: 30m}\n"
    "DB: {provider: postgres, connection: app_db, grant: [app_admin], ttl: 1h}\n"
)


def test_a_denial_is_recorded_as_one_json_line_naming_rule_run_and_keys() -> None:
    token = claims(actor="mallory\nx", run_attempt="3")
    to = Destination("environment", "ci-pr-5")
    decision = decide(KEYS, given=token, to=to)
    line = record(decision, token, to, at=datetime(2026, 12, 7, 0, 1, tzinfo=UTC)).to_log()
    assert "\n" not in line
    data = json.loads(line)
    assert data == {
        "event": "policy decision",
        "at": "2026-12-07T00:01:00+00:00",
        "outcome": "deny",
        "rules": ["app-ci"],
        "repository": "acme/app",
        "repository_id": "4242",
        "ref": "refs/heads/main",
        "event_name": "push",
        "workflow": "acme/app/.github/workflows/ci.yml@refs/heads/main",
        "job_workflow_ref": "acme/shared/.github/workflows/integration.yml@refs/heads/main",
        "run_id": "1001",
        "run_attempt": "3",
        "actor": "mallory\nx",
        "destination": "environment 'ci-pr-5'",
        "keys": [
            {
                "name": "TOKEN",
                "provider": "random",
                "connection": None,
                "outcome": "allow",
                "rule": "app-ci",
                "field": None,
                "reason": "",
            },
            {
                "name": "DB",
                "provider": "postgres",
                "connection": "APP_DB",
                "outcome": "deny",
                "rule": "app-ci",
                "field": "grant",
                "reason": "'app_admin' not among the roles the rule allows (app_read, app_write)",
            },
        ],
    }
    assert "skzq" not in line  # a parameter of the spec is not the record's


def test_an_allowed_request_records_the_rules_that_allowed_it() -> None:
    decision = decide("TOKEN: {provider: random, ttl: 30m}\n")
    data = json.loads(record(decision, claims(), Destination()).to_log())
    assert (data["outcome"], data["rules"], data["at"]) == ("allow", ["app-ci"], None)
    assert data["destination"] == "this job only"
