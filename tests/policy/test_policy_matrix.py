"""Issue 15's policy matrix: each almost-right request is denied naming the rule, the claim or
field that failed, and why; the right one is allowed. Oracles are written here."""

from __future__ import annotations

from typing import Any

import pytest

from handler.policy import NO_RULE, Destination
from tests.policy.kit import HTTP_KEY, SHARED_WORKFLOW, claims, decide, only

PG = "DB: {provider: postgres, connection: app_db, grant: [app_read], ttl: 1h}\n"
MYSQL = (
    "SHOP: {provider: mysql, connection: shop_db, ttl: 1h,"
    " grant: [{database: shop, privileges: [SELECT, CREATE VIEW]}]}\n"
)
REDIS = (
    "CACHE: {provider: redis, connection: cache, ttl: 1h, categories: ['@read'],"
    " commands: [get, 'client|setname'], keys: ['ci:*']}\n"
)
RANDOM = "TOKEN: {provider: random, ttl: 30m}\n"


def test_the_allowed_request_is_allowed_key_by_key() -> None:
    decision = decide(PG + MYSQL + REDIS + HTTP_KEY, to=Destination("environment", "ci-pr-7"))
    assert decision.allowed
    assert [(k.key, k.allowed, k.rule) for k in decision.keys] == [
        ("DB", True, "app-ci"),
        ("SHOP", True, "app-ci"),
        ("CACHE", True, "app-ci"),
        ("ISSUED", True, "app-ci"),
    ]


@pytest.mark.parametrize(
    ("changed", "claim", "says"),
    [
        ({"repository": "acme/other", "repository_id": "5"}, "repository", "'acme/other'"),
        ({"repository": "evil/app", "repository_owner": "evil"}, "repository", "'evil/app'"),
        # a sibling of the same owner whose name starts like the allowed one
        ({"repository": "acme/app-fork"}, "repository", "'acme/app-fork'"),
        ({"ref": "refs/heads/feature"}, "ref", "'refs/heads/feature'"),
        ({"ref": "refs/heads/main-evil"}, "ref", "'refs/heads/main-evil'"),
        ({"ref": "refs/tags/refs/heads/main"}, "ref", "'refs/tags/refs/heads/main'"),
        (
            {"event_name": "pull_request", "ref": "refs/heads/main"},
            "event_name",
            "'pull_request'",
        ),
        (
            {"job_workflow_ref": "acme/app/.github/workflows/integration.yml@refs/heads/main"},
            "job_workflow_ref",
            "acme/app/",
        ),
        (  # the right reusable workflow, at a branch anyone with write access can push
            {"job_workflow_ref": SHARED_WORKFLOW.replace("@refs/heads/main", "@refs/heads/x")},
            "job_workflow_ref",
            "@refs/heads/x",
        ),
        ({"job_workflow_ref": None}, "job_workflow_ref", "has none"),
    ],
)
def test_a_token_the_rule_does_not_name_matches_no_rule(
    changed: dict[str, Any], claim: str, says: str
) -> None:
    key = only(decide(RANDOM, given=claims(**changed)))
    assert not key.allowed
    assert key.rule == NO_RULE
    assert key.field == claim
    assert "closest is rule 'app-ci'" in key.reason
    assert says in key.reason
    assert key.fix


def test_owner_and_repository_compare_without_case_refs_and_paths_with() -> None:
    """GitHub owner and repository names are case-insensitive (one repository, any case);
    git refs and workflow paths are not."""
    assert only(decide(RANDOM, given=claims(repository="ACME/App"))).allowed
    upper_ref = only(decide(RANDOM, given=claims(ref="refs/heads/MAIN")))
    assert (upper_ref.allowed, upper_ref.field) == (False, "ref")
    upper_owner = SHARED_WORKFLOW.replace("acme/shared", "Acme/Shared")
    assert only(decide(RANDOM, given=claims(job_workflow_ref=upper_owner))).allowed
    upper_path = SHARED_WORKFLOW.replace("integration.yml", "Integration.yml")
    denied = only(decide(RANDOM, given=claims(job_workflow_ref=upper_path)))
    assert (denied.allowed, denied.field) == (False, "job_workflow_ref")


@pytest.mark.parametrize(
    ("keys", "field", "says"),
    [
        ("DB: {provider: postgres, connection: app_db, grant: [app_read], ttl: 3h}\n", "ttl", "3h"),
        (
            "DB: {provider: postgres, connection: app_db, grant: [app_read], ttl: 2h1s}\n",
            "ttl",
            "2h1s",
        ),
        (
            "DB: {provider: postgres, connection: app_db, grant: [app_admin]}\n",
            "grant",
            "app_admin",
        ),
        # a prefix of an allowed role, and a case variant (another role when quoted)
        ("DB: {provider: postgres, connection: app_db, grant: [app]}\n", "grant", "'app'"),
        ("DB: {provider: postgres, connection: app_db, grant: [APP_READ]}\n", "grant", "APP_READ"),
        (
            "DB: {provider: postgres, connection: other_db, grant: [app_read]}\n",
            "connection",
            "OTHER_DB",
        ),
        (
            "SHOP: {provider: mysql, connection: shop_db,"
            " grant: [{database: shop, privileges: [DELETE]}]}\n",
            "grant[0].privileges",
            "DELETE",
        ),
        (  # a prefix of an allowed privilege (CREATE VIEW) is another privilege
            "SHOP: {provider: mysql, connection: shop_db,"
            " grant: [{database: shop, privileges: [CREATE]}]}\n",
            "grant[0].privileges",
            "'CREATE'",
        ),
        (
            "SHOP: {provider: mysql, connection: shop_db,"
            " grant: [{database: shop, privileges: [SELECT]}, {database: billing,"
            " privileges: [SELECT]}]}\n",
            "grant[1].database",
            "billing",
        ),
        (  # MySQL schema names are case-sensitive on Linux
            "SHOP: {provider: mysql, connection: shop_db,"
            " grant: [{database: Shop, privileges: [SELECT]}]}\n",
            "grant[0].database",
            "'Shop'",
        ),
        (
            "C: {provider: redis, connection: cache, categories: ['@keyspace'], keys: ['ci:*']}\n",
            "categories",
            "keyspace",
        ),
        (
            "C: {provider: redis, connection: cache, commands: [del], keys: ['ci:*']}\n",
            "commands",
            "del",
        ),
        (  # an allowed command (`set`) is a prefix of it
            "C: {provider: redis, connection: cache, commands: [setex], keys: ['ci:*']}\n",
            "commands",
            "'setex'",
        ),
        (  # another subcommand of a command the policy allows one subcommand of
            "C: {provider: redis, connection: cache, commands: ['client|getname']}\n",
            "commands",
            "'client|getname'",
        ),
        ("C: {provider: redis, connection: cache, keys: ['*']}\n", "keys", "'*'"),
        ("C: {provider: redis, connection: cache, keys: ['c*']}\n", "keys", "'c*'"),
        ("C: {provider: redis, connection: cache, keys: ['*ci:*']}\n", "keys", "'*ci:*'"),
        ("C: {provider: redis, connection: cache, keys: ['?i:*']}\n", "keys", "'?i:*'"),
        ("C: {provider: redis, connection: cache, keys: ['[c]i:*']}\n", "keys", "'[c]i:*'"),
        ("C: {provider: redis, connection: cache, channels: ['ci:*']}\n", "channels", "no"),
        ("T: {provider: random, ttl: 30m, lifetime: ttl}\n", "lifetime", "'ttl'"),
        (
            "T: {provider: github-token, repositories: [acme/app],"
            " permissions: {contents: read}}\n",
            "provider",
            "github-token",
        ),
    ],
)
def test_a_key_outside_the_rules_limits_is_denied(keys: str, field: str, says: str) -> None:
    key = only(decide(keys))
    assert not key.allowed
    assert key.rule == "app-ci"
    assert key.field == field
    assert says in key.reason
    assert key.fix


def test_a_ttl_exactly_at_max_ttl_is_allowed() -> None:
    assert only(decide("DB: {provider: postgres, connection: app_db, ttl: 2h}\n")).allowed
    assert only(decide("DB: {provider: postgres, connection: app_db, ttl: 1h60m}\n")).allowed


def test_the_same_grants_in_another_spelling_are_allowed() -> None:
    """What the provider grants identically: `select`/`SELECT`, `read`/`@read`/`+@read`;
    taking a command away (`-get`) only narrows the key."""
    assert only(
        decide(
            "SHOP: {provider: mysql, connection: shop_db,"
            " grant: [{database: shop, privileges: [select, create  view]}]}\n"
        )
    ).allowed
    assert only(
        decide(
            "C: {provider: redis, connection: cache, categories: [read, '+@write'],"
            " commands: ['-get', '-flushall'], keys: ['ci:a*', 'ci:'], channels: []}\n"
        )
    ).allowed


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("path: /v1/tokens,", "path: /v1/admin,", "mint"),
        ("reference: data.id}", "reference: data.id, expires_at: data.exp}", "response"),
        ('revoke: {path: "/v1/tokens/{reference}"}', 'revoke: {path: "/v2/{reference}"}', "revoke"),
    ],
)
def test_an_http_template_changed_by_the_spec_is_denied(old: str, new: str, field: str) -> None:
    assert old in HTTP_KEY
    key = only(decide(HTTP_KEY.replace(old, new)))
    assert (key.allowed, key.field) == (False, field)
    assert "template" in key.reason


def test_an_http_key_with_an_auth_of_its_own_is_denied() -> None:
    key = only(decide(HTTP_KEY + "  auth: basic\n"))
    assert (key.allowed, key.field) == (False, "auth")


@pytest.mark.parametrize(
    ("to", "allowed"),
    [
        (Destination(), True),
        (Destination("environment", "ci-pr-12"), True),
        (Destination("environment", "CI-PR-12"), True),  # environment names ignore case
        (Destination("environment", "production"), False),
        (Destination("environment", "ci-pr-12/x"), False),
        (Destination("environment", "c\u0131-pr-12"), False),  # U+0131, dotless i, is not i
        (Destination("environment", "ci-prod"), False),
        (Destination("repository"), False),
    ],
)
def test_only_the_destinations_the_rule_names(to: Destination, allowed: bool) -> None:
    key = only(decide(RANDOM, to=to))
    assert key.allowed is allowed
    if not allowed:
        assert key.field == "destination"
        assert "ci-pr-*" in key.reason


def test_max_keys_is_allowed_and_one_more_is_not() -> None:
    four = "".join(f"K{i}: {{provider: random, ttl: 30m}}\n" for i in range(4))
    assert decide(four).allowed
    five = decide(four + "K4: {provider: random, ttl: 30m}\n")
    assert not five.allowed
    assert {(k.allowed, k.field) for k in five.keys} == {(False, "max_keys")}
    assert "5 keys" in five.keys[0].reason
    assert "at most 4" in five.keys[0].reason


def test_one_denied_key_denies_the_request_and_names_only_itself() -> None:
    decision = decide(RANDOM + "DB: {provider: postgres, connection: app_db, grant: [root]}\n")
    assert not decision.allowed
    assert [(k.key, k.allowed) for k in decision.keys] == [("TOKEN", True), ("DB", False)]


def test_a_deny_rule_beats_an_allow_rule() -> None:
    legacy = claims(repository="acme/legacy", repository_id="9")
    key = only(decide(RANDOM, given=legacy))
    assert not key.allowed
    assert key.rule == "legacy-frozen"
    assert key.field == "deny"
    assert key.reason == "acme/legacy is frozen until its migration"


@pytest.mark.parametrize(
    "changed",
    [
        {"repository": "acme/*"},
        {"repository": "acme/ap?"},
        {"repository": "*"},
        {"repository": "**"},
        {"ref": "refs/heads/*"},
        {"ref": "refs/heads/ma??"},
        {"job_workflow_ref": "acme/shared/.github/workflows/*@refs/heads/main"},
        {"job_workflow_ref": "**"},
    ],
)
def test_a_claim_holding_glob_characters_is_a_literal_not_a_pattern(
    changed: dict[str, Any],
) -> None:
    key = only(decide(RANDOM, given=claims(**changed)))
    assert not key.allowed
    assert key.rule == NO_RULE
    assert key.field == next(iter(changed))


WILD = """\
version: 1
rules:
  - name: acme-branches
    match:
      repository_owner: acme
      ref: refs/heads/release/*
      job_workflow_ref: "acme/shared/.github/workflows/*.yml@refs/heads/main"
    max_keys: 2
    allow: [{provider: random, max_ttl: 1h}]
"""


@pytest.mark.parametrize(
    ("changed", "allowed"),
    [
        ({"ref": "refs/heads/release/1.2"}, True),
        ({"ref": "refs/heads/release/1.2/x"}, False),  # `*` stops at `/`
        ({"ref": "refs/heads/release/"}, True),
        ({"ref": "refs/heads/releases/1"}, False),
        (
            {"repository": "other/app", "repository_owner": "other", "ref": "refs/heads/release/1"},
            False,
        ),
        (
            {
                "ref": "refs/heads/release/1",
                # a workflow at a branch named `x@refs/heads/main`: `*` cannot cross the `/`
                "job_workflow_ref": (
                    "acme/shared/.github/workflows/a.yml@refs/heads/x@refs/heads/main"
                ),
            },
            False,
        ),
        (
            {
                "ref": "refs/heads/release/1",
                "job_workflow_ref": "acme/shared/.github/workflows/sub/a.yml@refs/heads/main",
            },
            False,
        ),
    ],
)
def test_globs_in_the_policy(changed: dict[str, Any], allowed: bool) -> None:
    from tests.policy.kit import policy

    key = only(decide(RANDOM, given=claims(**changed), rules=policy(WILD)))
    assert key.allowed is allowed


def test_a_repository_id_is_compared_as_an_exact_number() -> None:
    from tests.policy.kit import policy

    text = WILD.replace("repository_owner: acme", "repository_id: 4242").replace(
        "refs/heads/release/*", "refs/heads/main"
    )
    text = text.replace("*.yml@", "integration.yml@")
    assert only(decide(RANDOM, rules=policy(text))).allowed
    for other in ("42420", "424", "04242"):
        key = only(decide(RANDOM, given=claims(repository_id=other), rules=policy(text)))
        assert (key.allowed, key.field) == (False, "repository_id")


def test_no_rules_at_all_deny_everything() -> None:
    from tests.policy.kit import policy

    key = only(decide(RANDOM, rules=policy("version: 1\n")))
    assert (key.allowed, key.rule, key.field) == (False, NO_RULE, "rules")


# Each claim a rule can name, a value a token of the allowed run has, and an almost-right one.
OPTIONAL_CLAIMS = (
    "ref_type",
    "environment",
    "workflow_ref",
    "job_workflow_ref",
    "runner_environment",
)
CLAIM_CASES = [
    ("repository", "acme/app", "acme/app2"),
    ("repository_owner", "acme", "acme-corp"),
    ("repository_id", "4242", "4243"),
    ("ref", "refs/heads/main", "refs/heads/mai"),
    ("ref_type", "branch", "tag"),
    ("environment", "staging", "staging-2"),
    ("event_name", "push", "pull_request_target"),
    (
        "workflow_ref",
        "acme/app/.github/workflows/ci.yml@refs/heads/main",
        "acme/app/.github/workflows/ci.yaml@refs/heads/main",
    ),
    ("job_workflow_ref", SHARED_WORKFLOW, SHARED_WORKFLOW + "2"),
    ("runner_environment", "github-hosted", "self-hosted"),
]


@pytest.mark.parametrize(("claim", "value", "other"), CLAIM_CASES)
def test_every_claim_a_rule_names_is_checked(claim: str, value: str, other: str) -> None:
    from tests.policy.kit import policy

    binding = "" if claim == "repository_owner" else "repository_owner: acme, "
    text = (
        "version: 1\nrules:\n  - name: one-claim\n    max_keys: 1\n"
        f"    match: {{{binding}{claim}: '{value}'}}\n"
        "    allow: [{provider: random, max_ttl: 1h}]\n"
    )
    rules = policy(text)
    assert only(decide(RANDOM, given=claims(**{claim: value}), rules=rules)).allowed
    key = only(decide(RANDOM, given=claims(**{claim: other}), rules=rules))
    assert (key.allowed, key.rule, key.field) == (False, NO_RULE, claim)
    if claim in OPTIONAL_CLAIMS:  # a token may lack these: then no rule naming one matches
        absent = only(decide(RANDOM, given=claims(**{claim: None}), rules=rules))
        assert (absent.allowed, absent.field) == (False, claim)


def test_the_environment_claim_ignores_case_and_a_dot_is_a_dot() -> None:
    from tests.policy.kit import policy

    text = (
        "version: 1\nrules:\n  - name: env\n    max_keys: 1\n"
        "    match: {repository: acme/app.v2, environment: Staging}\n"
        "    allow: [{provider: random, max_ttl: 1h}]\n"
    )
    app = {"repository": "acme/app.v2"}
    assert only(
        decide(RANDOM, given=claims(**app, environment="staging"), rules=policy(text))
    ).allowed
    long_s = claims(**app, environment="\u017ftaging")  # long s folds to s in Unicode only
    assert not only(decide(RANDOM, given=long_s, rules=policy(text))).allowed
    dotless = claims(repository="acme/appxv2", environment="staging")
    assert not only(decide(RANDOM, given=dotless, rules=policy(text))).allowed


def test_keys_of_earlier_requests_of_the_run_count_toward_max_keys() -> None:
    from handler.policy import evaluate
    from runkeys.spec import parse_keys
    from tests.policy.kit import policy

    spec = parse_keys(RANDOM + "T2: {provider: random, ttl: 30m}\n")
    assert evaluate(policy(), claims(), spec, Destination(), keys_before=2).allowed
    over = evaluate(policy(), claims(), spec, Destination(), keys_before=3)
    assert [(k.allowed, k.field) for k in over.keys] == [(False, "max_keys")] * 2
    assert "5 keys in this run" in over.keys[0].reason


SCOPED_DENY = """\
version: 1
rules:
  - name: strict
    match: {repository: acme/app}
    max_keys: 5
    allow:
      - {provider: random, max_ttl: 10m}
  - name: lenient
    match: {repository: acme/app}
    max_keys: 5
    allow:
      - {provider: random, max_ttl: 1h}
      - {provider: postgres, connection: app_db, max_ttl: 1h}
      - {provider: postgres, connection: other_db, max_ttl: 1h}
deny:
  - name: no-app-db-on-push
    match: {event_name: push}
    providers: [postgres]
    connections: [App-DB]
    reason: app_db keys only for pull requests
"""


def test_a_scoped_deny_rule_denies_only_the_keys_it_covers() -> None:
    from tests.policy.kit import policy

    decision = decide(
        RANDOM
        + "DB: {provider: postgres, connection: app_db}\n"
        + "OTHER: {provider: postgres, connection: other_db}\n",
        rules=policy(SCOPED_DENY),
    )
    assert [(k.key, k.allowed, k.rule) for k in decision.keys] == [
        ("TOKEN", True, "lenient"),  # over `strict`'s 10m, within `lenient`'s hour
        ("DB", False, "no-app-db-on-push"),  # connection names compare as normalized
        ("OTHER", True, "lenient"),
    ]


def test_when_every_matching_rule_refuses_the_first_ones_reason_is_given() -> None:
    from tests.policy.kit import policy

    key = only(decide("TOKEN: {provider: random, ttl: 2h}\n", rules=policy(SCOPED_DENY)))
    assert (key.allowed, key.rule, key.field) == (False, "strict", "ttl")
    assert "max_ttl of 10m" in key.reason
