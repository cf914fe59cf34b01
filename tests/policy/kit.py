"""A policy, the claims of a token it allows, and helpers to evaluate specs against them:
written here as a platform team would write them, not derived from the code under test."""

from __future__ import annotations

from typing import Any

from handler.policy import (
    Claims,
    Decision,
    Destination,
    KeyDecision,
    Policy,
    claims_from,
    evaluate,
    parse_policy,
)
from runkeys.spec import SpecRules, parse_keys

SHARED_WORKFLOW = "acme/shared/.github/workflows/integration.yml@refs/heads/main"
HTTP_TEMPLATE = """{
          mint: {path: /v1/tokens, body: {name: "{label}", expires_at: "{expires_at}"}},
          response: {value: data.token, reference: data.id},
          revoke: {path: "/v1/tokens/{reference}"},
        }"""

POLICY = f"""\
version: 1
rules:
  - name: app-ci
    match:
      repository: acme/app
      ref: refs/heads/main
      event_name: push
      job_workflow_ref: {SHARED_WORKFLOW}
    max_keys: 4
    destinations:
      environments: ["ci-pr-*"]
    allow:
      - provider: postgres
        connection: app_db
        max_ttl: 2h
        grant: [app_read, app_write]
      - provider: mysql
        connection: shop_db
        max_ttl: 2h
        privileges: [SELECT, INSERT, CREATE VIEW]
        schemas: [shop]
      - provider: redis
        connection: cache
        max_ttl: 2h
        categories: ["@read", "@write"]
        commands: [get, set, "client|setname"]
        key_prefixes: ["ci:"]
      - provider: http
        connection: issuer
        max_ttl: 1h
        template: {HTTP_TEMPLATE}
      - provider: random
        max_ttl: 1h
  - name: legacy
    match: {{repository: acme/legacy}}
    max_keys: 10
    allow:
      - {{provider: random, max_ttl: 1h}}
deny:
  - name: legacy-frozen
    match: {{repository: acme/legacy}}
    reason: acme/legacy is frozen until its migration
"""

CLAIMS: dict[str, Any] = {
    "repository": "acme/app",
    "repository_id": "4242",
    "repository_owner": "acme",
    "repository_owner_id": "77",
    "ref": "refs/heads/main",
    "ref_type": "branch",
    "event_name": "push",
    "workflow_ref": "acme/app/.github/workflows/ci.yml@refs/heads/main",
    "job_workflow_ref": SHARED_WORKFLOW,
    "runner_environment": "github-hosted",
    "run_id": "1001",
    "run_attempt": "2",
    "actor": "alice",
    "sha": "0" * 40,
    "jti": "not-read-by-the-policy",
}

HTTP_KEY = """\
ISSUED:
  provider: http
  connection: issuer
  ttl: 1h
  mint: {path: /v1/tokens, body: {name: "{label}", expires_at: "{expires_at}"}}
  response: {value: data.token, reference: data.id}
  revoke: {path: "/v1/tokens/{reference}"}
"""


def policy(text: str = POLICY) -> Policy:
    return parse_policy(text, "test-policy.yml")


def claims(**changed: Any) -> Claims:
    return claims_from({**CLAIMS, **changed})


def decide(
    keys: str,
    *,
    given: Claims | None = None,
    to: Destination | None = None,
    rules: Policy | None = None,
) -> Decision:
    token = given or claims()
    spec = parse_keys(keys, SpecRules(pull_request=token.event_name == "pull_request"))
    return evaluate(rules or policy(), token, spec, to or Destination())


def only(decision: Decision) -> KeyDecision:
    assert len(decision.keys) == 1
    return decision.keys[0]
