"""Issue 15, item 3: every denial names the rule (or "no rule matched"), the claim or field that
failed, and how to fix it. Each kind of refusal is asserted here word for word, as a person
reading the annotation would see it; and the almost-right patterns, claims and policy files
that the matching, the bounds and the loader must tell apart. Oracles are written here."""

from __future__ import annotations

import locale
from pathlib import Path

import pytest

from handler.policy import (
    NO_RULE,
    POLICY_SETTING,
    Destination,
    KeyDecision,
    PolicyError,
    PolicyStore,
    claims_from,
    load_policy_file,
    parse_policy,
)
from runkeys.errors import ConfigError
from tests.policy.kit import CLAIMS, HTTP_KEY, claims, decide, only, policy

RANDOM = "TOKEN: {provider: random, ttl: 30m}\n"


def refused(key: KeyDecision) -> tuple[bool, str, str | None, str, str]:
    return (key.allowed, key.rule, key.field, key.reason, key.fix)


def one_rule(body: str, match: str = "{repository: acme/app}") -> str:
    return f"version: 1\nrules:\n  - name: r\n    match: {match}\n    max_keys: 3\n{body}"


# --- each kind of refusal, word for word ------------------------------------------------------

# Rule `app-ci` of tests/policy/kit.py: environments ci-pr-*, the job, no repository secrets.
APP_CI_DESTINATIONS = "environments ci-pr-*; this job only"
TWO_ENVIRONMENTS = one_rule(
    "    destinations: {job: false, repository_secrets: false,"
    " environments: ['ci-pr-*', staging]}\n"
    "    allow: [{provider: random, max_ttl: 1h}]\n"
)
NOWHERE = one_rule("    destinations: {job: false}\n    allow: [{provider: random, max_ttl: 1h}]\n")
SECRETS_ONLY = one_rule(
    "    destinations: {job: false, repository_secrets: true}\n"
    "    allow: [{provider: random, max_ttl: 1h}]\n"
)


@pytest.mark.parametrize(
    ("text", "to", "rule", "reason", "fix"),
    [
        (
            None,
            Destination("repository"),
            "app-ci",
            f"repository secrets is not a destination the rule allows ({APP_CI_DESTINATIONS})",
            f"write the keys to one of: {APP_CI_DESTINATIONS}",
        ),
        (
            TWO_ENVIRONMENTS,
            Destination(),
            "r",
            "this job only is not a destination the rule allows (environments ci-pr-*, staging)",
            "write the keys to one of: environments ci-pr-*, staging",
        ),
        (
            NOWHERE,
            Destination("environment", "ci-pr-1"),
            "r",
            "environment 'ci-pr-1' is not a destination the rule allows (nothing)",
            "write the keys to one of: nothing",
        ),
        (
            SECRETS_ONLY,
            Destination(),
            "r",
            "this job only is not a destination the rule allows (repository secrets)",
            "write the keys to one of: repository secrets",
        ),
    ],
)
def test_a_destination_refusal_lists_what_the_rule_allows(
    text: str | None, to: Destination, rule: str, reason: str, fix: str
) -> None:
    key = only(decide(RANDOM, to=to, rules=policy(text) if text else None))
    assert refused(key) == (False, rule, "destination", reason, fix)


REDIS_NO_PREFIXES = one_rule(
    "    allow:\n"
    "      - {provider: redis, connection: cache, max_ttl: 1h, categories: [], commands: [],"
    " key_prefixes: ['ci:', 'test:'], channel_prefixes: []}\n"
)
POSTGRES_NO_ROLES = one_rule("    allow: [{provider: postgres, connection: app_db, max_ttl: 1h}]\n")
MYSQL_NO_PRIVILEGES = one_rule(
    "    allow: [{provider: mysql, connection: shop_db, max_ttl: 1h, schemas: [shop, stock]}]\n"
)


@pytest.mark.parametrize(
    ("keys", "text", "field", "reason", "fix"),
    [
        (
            "C: {provider: redis, connection: cache, keys: ['app:*']}\n",
            REDIS_NO_PREFIXES,
            "keys",
            "'app:*' is not under a prefix the rule allows (ci:, test:)",
            "start every pattern with one of: ci:, test:",
        ),
        (
            "C: {provider: redis, connection: cache, keys: ['ci:*'], channels: ['ci:*']}\n",
            REDIS_NO_PREFIXES,
            "channels",
            "'ci:*' is not under a prefix the rule allows (none)",
            "ask for no channels",
        ),
        (
            "C: {provider: redis, connection: cache, categories: ['@read', '+@write']}\n",
            REDIS_NO_PREFIXES,
            "categories",
            "'read', 'write' not among the categories the rule allows (none)",
            "ask for no categories",
        ),
        (
            "C: {provider: redis, connection: cache, commands: [get]}\n",
            REDIS_NO_PREFIXES,
            "commands",
            "'get' not among the commands the rule allows (none)",
            "ask for no commands",
        ),
        (
            "DB: {provider: postgres, connection: app_db, grant: [app_read]}\n",
            POSTGRES_NO_ROLES,
            "grant",
            "'app_read' not among the roles the rule allows (none)",
            "ask for no roles",
        ),
        (
            "DB: {provider: postgres, connection: app_db, grant: [app_admin, app_owner]}\n",
            None,
            "grant",
            "'app_admin', 'app_owner' not among the roles the rule allows (app_read, app_write)",
            "ask only for some of: app_read, app_write",
        ),
        (
            "SHOP: {provider: mysql, connection: shop_db,"
            " grant: [{database: billing, privileges: [SELECT]}]}\n",
            MYSQL_NO_PRIVILEGES,
            "grant[0].database",
            "'billing' not among the schemas the rule allows (shop, stock)",
            "ask only for some of: shop, stock",
        ),
        (
            "SHOP: {provider: mysql, connection: shop_db,"
            " grant: [{database: stock, privileges: [select]}]}\n",
            MYSQL_NO_PRIVILEGES,
            "grant[0].privileges",
            "'SELECT' not among the privileges the rule allows (none)",
            "ask for no privileges",
        ),
        (
            "T: {provider: random, ttl: 30m, lifetime: ttl}\n",
            None,
            "lifetime",
            "lifetime 'ttl' is not among the rule's (job, run, pr)",
            "use one of: job, run, pr",
        ),
        (
            "T: {provider: random, ttl: 61m}\n",
            None,
            "ttl",
            "1h1m is longer than the rule's max_ttl of 1h",
            "set `ttl: 1h` or less on T",
        ),
        (
            "T: {provider: github-token, repositories: [acme/app],"
            " permissions: {contents: read}}\n",
            None,
            "provider",
            "the rule allows no github-token key",
            "use a provider the rule names, or add an allow entry for this one",
        ),
        (
            "DB: {provider: postgres, connection: app_dbx, grant: [app_read]}\n",
            None,
            "connection",
            "the rule allows postgres on no connection named 'APP_DBX'",
            "use a connection the rule names",
        ),
    ],
)
def test_a_bounds_refusal_names_the_field_what_is_allowed_and_the_fix(
    keys: str, text: str | None, field: str, reason: str, fix: str
) -> None:
    key = only(decide(keys, rules=policy(text) if text else None))
    rule = "r" if text else "app-ci"
    assert refused(key) == (False, rule, field, reason, fix)


def test_an_edited_http_template_is_refused_with_the_fix() -> None:
    key = only(decide(HTTP_KEY.replace("/v1/tokens/{reference}", "/v1/tokens/{reference}/x")))
    assert refused(key) == (
        False,
        "app-ci",
        "revoke",
        "differs from the http template the policy fixes",
        "copy the template from the policy exactly",
    )


def test_max_keys_says_how_many_and_the_fix() -> None:
    five = "".join(f"T{i}: {{provider: random, ttl: 30m}}\n" for i in range(5))
    key = decide(five).keys[0]
    assert refused(key) == (
        False,
        "app-ci",
        "max_keys",
        "5 keys in this run; the rule allows at most 4",
        "mint at most 4 keys per run",
    )


def test_no_rule_names_the_closest_rules_claim_and_every_pattern_it_wanted() -> None:
    text = one_rule(
        "    allow: [{provider: random, max_ttl: 1h}]\n",
        match="{repository: acme/app, environment: [staging, 'ci-pr-*']}",
    )
    key = only(decide(RANDOM, rules=policy(text)))  # the token has no environment
    assert refused(key) == (
        False,
        NO_RULE,
        "environment",
        "closest is rule 'r': the token's environment has none; the rule wants "
        "'staging' or 'ci-pr-*'",
        "run from a environment the rule names, or add a rule for this one",
    )


def test_no_rule_names_every_claim_the_closest_rule_failed_on_not_only_the_first() -> None:
    """A pull request's run fails a main-and-push rule on `ref` and `event_name` both: naming
    only `ref`, the fix would meet `event_name` next. Rule `far` fails on three claims."""
    text = (
        "version: 1\nrules:\n"
        "  - name: far\n"
        "    match: {repository: acme/app, ref: refs/heads/x, event_name: push,"
        " environment: prod}\n"
        "    max_keys: 3\n"
        "    allow: [{provider: random, max_ttl: 1h}]\n"
        "  - name: main-push\n"
        "    match: {repository: acme/app, ref: refs/heads/main, event_name: push}\n"
        "    max_keys: 3\n"
        "    allow: [{provider: random, max_ttl: 1h}]\n"
    )
    token = claims(ref="refs/pull/7/merge", event_name="pull_request")
    key = only(decide(RANDOM, given=token, rules=policy(text)))
    assert refused(key) == (
        False,
        NO_RULE,
        "ref, event_name",
        "closest is rule 'main-push': the token's ref is 'refs/pull/7/merge'; the rule wants "
        "'refs/heads/main'; the token's event_name is 'pull_request'; the rule wants 'push'",
        "run from a ref and event_name the rule names, or add a rule for this one",
    )


def test_a_policy_without_rules_says_so_and_the_fix() -> None:
    key = only(decide(RANDOM, rules=policy("version: 1\n")))
    assert refused(key) == (
        False,
        NO_RULE,
        "rules",
        "the policy has no rules",
        "add a rule for this repository",
    )


def test_an_allowed_key_carries_no_reason_nor_fix() -> None:
    assert refused(only(decide(RANDOM))) == (True, "app-ci", None, "", "")


# --- matching and bounds: the almost-right ones -------------------------------------------------

TWO_RANDOM_ENTRIES = one_rule(
    "    allow:\n"
    "      - {provider: random, max_ttl: 10m}\n"
    "      - {provider: random, max_ttl: 1h}\n"
)


def test_one_allow_entry_of_several_for_the_provider_is_enough() -> None:
    """The first entry refuses 30m (max 10m); the second allows it."""
    assert only(decide(RANDOM, rules=policy(TWO_RANDOM_ENTRIES))).allowed
    over = only(decide("TOKEN: {provider: random, ttl: 2h}\n", rules=policy(TWO_RANDOM_ENTRIES)))
    assert (over.allowed, over.field, over.reason) == (
        False,
        "ttl",
        "2h is longer than the rule's max_ttl of 10m",  # the first entry's reason
    )


def ref_rule(pattern: str) -> str:
    return one_rule(
        "    allow: [{provider: random, max_ttl: 1h}]\n",
        match=f"{{repository: acme/app, ref: '{pattern}'}}",
    )


@pytest.mark.parametrize(
    ("pattern", "ref", "allowed"),
    [
        ("refs/heads/feat**", "refs/heads/feat/a/b", True),  # `**` crosses `/` mid-segment
        ("refs/heads/feat**", "refs/tags/feat", False),
        ("refs/heads/**", "refs/heads/a/b/c", True),
        ("refs/**/main", "refs/heads/x/main", True),
        ("refs/**/main", "refs/heads/x/main2", False),
        ("refs/heads/feat*", "refs/heads/feat/a", False),  # `*` stops at `/`
        ("refs/heads/feat*", "refs/heads/feature", True),
        ("refs/heads/*-x", "refs/heads/a-x", True),
        ("refs/heads/*-x", "refs/heads/a-y", False),
        ("refs/heads/v?", "refs/heads/v1", True),
        ("refs/heads/v?", "refs/heads/v10", False),  # `?` is one character
        ("refs/heads/v?", "refs/heads/v", False),
        ("refs/heads/?1", "refs/heads/v1", True),
        ("refs/heads/?1", "refs/heads/v2", False),
        ("refs/heads/a?c", "refs/heads/a/c", False),  # `?` is not `/`
        ("refs/heads/main", "refs/heads/main", True),
        ("refs/heads/main", "refs/heads/xmain", False),  # the first character counts
        ("refs/heads/main", "refs/heads/mainx", False),
        ("refs/heads/m.in", "refs/heads/main", False),  # a dot is a dot
        ("refs/heads/x**y", "refs/heads/x/q/y", True),
        ("refs/heads/x**y", "refs/heads/x/q/z", False),
        ("refs/heads/a*b*c", "refs/heads/abc", True),
        ("refs/heads/a*b*c", "refs/heads/ab", False),
        ("refs/heads/**x", "refs/heads/x", True),  # `**` may match nothing
        ("refs/heads/a**", "refs/heads/a", True),
        ("refs/heads/a**", "refs/heads/b", False),
    ],
)
def test_glob_patterns_on_refs(pattern: str, ref: str, allowed: bool) -> None:
    key = only(decide(RANDOM, given=claims(ref=ref), rules=policy(ref_rule(pattern))))
    assert key.allowed is allowed


def test_a_mysql_key_without_grants_is_within_any_mysql_rule() -> None:
    assert only(decide("SHOP: {provider: mysql, connection: shop_db}\n")).allowed


def test_a_redis_channel_under_an_allowed_prefix_is_allowed() -> None:
    text = one_rule(
        "    allow:\n"
        "      - {provider: redis, connection: cache, max_ttl: 1h, channel_prefixes: ['events:']}\n"
    )
    keys = "C: {provider: redis, connection: cache, channels: ['events:ci-*']}\n"
    assert only(decide(keys, rules=policy(text))).allowed


# --- the claims of a token ----------------------------------------------------------------------


def test_numeric_claims_become_strings_and_an_empty_environment_is_none() -> None:
    token = claims_from({**CLAIMS, "repository_id": 4242, "run_id": 1001, "run_attempt": 2})
    assert (token.repository_id, token.run_id, token.run_attempt) == ("4242", "1001", "2")
    assert claims_from({**CLAIMS, "environment": ""}).environment is None
    assert claims_from({**CLAIMS, "environment": "staging"}).environment == "staging"


# --- loading: what a policy file may say ---------------------------------------------------------


@pytest.mark.parametrize(
    "match",
    [
        "{repository: 'acme/*'}",  # only the owner must be literal
        "{repository: 'Xylo/app'}",  # an owner with an X
        "{repository_owner: Xylo}",
    ],
)
def test_a_rule_bound_to_a_literal_owner_loads(match: str) -> None:
    assert policy(one_rule("    allow: [{provider: random, max_ttl: 1h}]\n", match=match))


def test_redis_prefixes_and_categories_in_policy_file_spellings() -> None:
    text = one_rule(
        "    allow:\n"
        "      - {provider: redis, connection: cache, max_ttl: 1h,"
        " categories: ['+@read', 'write'], key_prefixes: ['XY:'], channel_prefixes: ['X:']}\n"
    )
    assert policy(text)


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ("categories: ['Xread']", "`categories` 'Xread' is not one runkeys grants"),
        ("key_prefixes: ['ci:*']", "`key_prefixes` 'ci:*' must be a plain, non-empty prefix"),
        ("channel_prefixes: ['']", "`channel_prefixes` '' must be a plain, non-empty prefix"),
    ],
)
def test_a_bad_redis_entry_is_refused_naming_its_field(section: str, says: str) -> None:
    text = one_rule(
        f"    allow:\n      - {{provider: redis, connection: cache, max_ttl: 1h, {section}}}\n"
    )
    with pytest.raises(PolicyError) as caught:
        policy(text)
    assert says in caught.value.cause


@pytest.mark.parametrize(
    ("match", "says"),
    [
        ("{repository: ''}", "`repository` has an empty pattern"),
        ("{repository: [acme/app, ' ']}", "`repository` has an empty pattern"),
        ("{repository_id: '42a'}", "`repository_id` '42a' is not a repository id (digits)"),
        # an owner has no `/`: this would match nobody, and `*` is a glob all the same
        ("{repository_owner: 'acme/*'}", "`match` must name repository (its owner without a"),
    ],
)
def test_a_bad_match_pattern_is_refused(match: str, says: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy(one_rule("    allow: [{provider: random, max_ttl: 1h}]\n", match=match))
    assert says in caught.value.cause


@pytest.mark.parametrize(
    ("deny", "says"),
    [
        ("{name: d, reason: ' '}", "`name` and `reason` must not be empty"),
        ("{name: ' ', reason: frozen}", "`name` and `reason` must not be empty"),
        (
            "{name: d, reason: frozen, providers: [postgresql]}",
            "`providers` 'postgresql' is no provider: use one of deploy-key, github-token, http, "
            "mysql, postgres, random, redis",
        ),
    ],
)
def test_a_bad_deny_rule_is_refused(deny: str, says: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy(f"version: 1\ndeny: [{deny}]\n")
    assert says in caught.value.cause


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- version: 1\n", "just text\n"])
def test_a_file_that_is_not_a_mapping_is_refused_at_line_1(text: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yml")
    error = caught.value
    assert (error.cause, error.line, error.fix, error.docs) == (
        "p.yml: expected a mapping with `version: 1` and `rules`",
        1,
        "",
        "docs/policy.md",
    )


def test_the_source_is_called_policy_when_not_named() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy("version: 2\n")
    assert caught.value.cause.startswith("policy, line 1: version: ")


def test_an_error_of_the_whole_file_is_placed_at_the_top() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy("version: 1\ncolour: red\n", "p.yml")
    error = caught.value
    assert error.cause == "p.yml, line 2: (top): Object contains unknown field `colour`"
    assert (error.line, error.fix, error.docs) == (
        2,
        "correct line 2; the policy in force (if any) is unchanged",
        "docs/policy.md",
    )


def test_a_yaml_syntax_error_names_its_line_and_the_problem_not_its_context() -> None:
    text = "version: 1\nrules:\n  - name: r\n   match: x\n"
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yml")
    assert caught.value.line == 4
    assert caught.value.cause == (
        "p.yml, line 4: not valid YAML: expected <block end>, but found '<block mapping start>'"
    )


def test_a_character_yaml_cannot_hold_is_refused_naming_its_line() -> None:
    """PyYAML checks the characters when its loader is made, before parsing: that error too
    is a PolicyError (a SIGHUP reload must keep the old policy, not crash)."""
    with pytest.raises(PolicyError) as caught:
        parse_policy("\nversion: 1\nrules: []\ndeny: [\x07]\n", "p.yml")
    assert caught.value.line == 4
    assert caught.value.cause == (
        "p.yml, line 4: not valid YAML: "
        "unacceptable character #x0007: special characters are not allowed"
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("!!int x", "ValueError: invalid literal for int() with base 10: 'x'"),
        ("!!bool x", "KeyError: 'x'"),
        ("!!timestamp x", "AttributeError: 'NoneType' object has no attribute 'groupdict'"),
    ],
)
def test_a_tagged_value_not_of_its_type_is_a_policy_error(value: str, error: str) -> None:
    """PyYAML raises these without a YAML error's mark: they too must be a PolicyError (a
    SIGHUP reload keeps the old policy), not a traceback."""
    with pytest.raises(PolicyError) as caught:
        parse_policy(f"version: 1\nrules: {value}\n", "p.yml")
    assert (caught.value.line, caught.value.cause) == (
        None,
        f"p.yml: not valid YAML: a `!!` tagged value is not of its type ({error})",
    )


def test_a_duplicate_key_is_refused_naming_its_line() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy("version: 1\nversion: 1\n", "p.yml")
    assert caught.value.cause == "p.yml, line 2: not valid YAML: duplicate key 'version'"


def test_a_policy_file_is_read_as_utf8(tmp_path: Path) -> None:
    file = tmp_path / "policy.yml"
    file.write_bytes("version: 1\ndeny: [{name: café, reason: gelé}]\n".encode())
    assert load_policy_file(file).deny[0].name == "café"
    file.write_bytes(b"version: 1\ndeny: [{name: caf\xe9, reason: x}]\n")  # Latin-1
    with pytest.raises(PolicyError) as caught:
        load_policy_file(file)
    assert caught.value.cause.startswith(f"cannot read the policy {file}: ")
    assert (caught.value.fix, caught.value.docs) == ("", "docs/policy.md")


def test_a_policy_file_is_utf8_whatever_the_locale(tmp_path: Path) -> None:
    """A container started without LANG may run in the C locale (ASCII): the policy a team
    wrote in UTF-8 must still load."""
    file = tmp_path / "policy.yml"
    file.write_bytes("version: 1\ndeny: [{name: café, reason: gelé}]\n".encode())
    was = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        assert load_policy_file(file).deny[0].reason == "gelé"
    finally:
        locale.setlocale(locale.LC_CTYPE, was)


def test_an_error_inside_a_yaml_set_is_placed_on_the_set() -> None:
    """A `!!set` is a YAML mapping that becomes a list: msgspec's `lifetimes[0]` has no node
    of its own, so the error is placed on the set's line, not lost."""
    text = (
        "version: 1\n"
        "rules:\n"
        "  - name: r\n"
        "    match: {repository: acme/app}\n"
        "    max_keys: 1\n"
        "    allow:\n"
        "      - provider: random\n"
        "        max_ttl: 1h\n"
        "        lifetimes: !!set\n"
        "          ? forever\n"
    )
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yml")
    assert (caught.value.line, caught.value.cause) == (
        9,
        "p.yml, line 9: rules[0].allow[0].lifetimes[0]: Invalid enum value 'forever'",
    )


def test_start_up_error_carries_the_fix(tmp_path: Path) -> None:
    file = tmp_path / "policy.yml"
    file.write_text("version: 1\nrules: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        PolicyStore.from_env({POLICY_SETTING: str(file)})
    assert caught.value.fix == "correct line 2; the policy in force (if any) is unchanged"
