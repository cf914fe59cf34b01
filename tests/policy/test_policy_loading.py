"""An invalid policy is refused naming its line and what is wrong; a reload keeps the policy in
force when the new file is invalid. Line numbers are counted here, in the texts below."""

from __future__ import annotations

from pathlib import Path

import pytest

from handler.policy import POLICY_SETTING, PolicyError, PolicyStore, parse_policy
from runkeys.errors import ConfigError
from tests.policy.kit import POLICY

GOOD = """\
version: 1
rules:
  - name: ci
    match: {repository: acme/app}
    max_keys: 2
    allow:
      - provider: random
        max_ttl: 1h
"""


@pytest.mark.parametrize(
    ("old", "new", "line", "says"),
    [
        ("        max_ttl: 1h\n", "        max_ttl: 1h\n        colour: red\n", 9, "`colour`"),
        ("        max_ttl: 1h\n", "        max_ttl: an hour\n", 8, "not a duration"),
        ("        max_ttl: 1h\n", "        max_ttl: 1h\n        connection: db\n", 9, "takes none"),
        ("      - provider: random\n", "      - provider: github-token\n", 7, "provider"),
        ("    max_keys: 2\n", "    max_keys: 101\n", 5, "<= 100"),
        ("    max_keys: 2\n", "    max_keys: two\n", 5, "Expected `int`"),
        ("    max_keys: 2\n", "", 3, "`max_keys`"),
        (
            "    match: {repository: acme/app}\n",
            "    match: {ref: refs/heads/main}\n",
            4,
            "repository",
        ),
        ("    match: {repository: acme/app}\n", "    match: {repo: acme/app}\n", 4, "`repo`"),
        # a glob owner binds nothing: anyone can create that owner's name-alike
        ("    match: {repository: acme/app}\n", "    match: {repository: '**'}\n", 4, "owner"),
        ("    match: {repository: acme/app}\n", "    match: {repository: '*/app'}\n", 4, "owner"),
        (
            "    match: {repository: acme/app}\n",
            "    match: {repository: [acme/app, 'ac?e/app']}\n",
            4,
            "owner",
        ),
        (
            "    match: {repository: acme/app}\n",
            "    match: {repository_owner: 'acme*'}\n",
            4,
            "owner",
        ),
        ("    match: {repository: acme/app}\n", "    match: {repository: []}\n", 4, "empty list"),
        ("version: 1\n", "version: 2\n", 1, "version"),
        (
            "        max_ttl: 1h\n",
            "        max_ttl: 1h\n        lifetimes: [forever]\n",
            9,
            "forever",
        ),
        (
            "        max_ttl: 1h\n",
            "        max_ttl: 1h\n  - name: ci\n    match: {repository: x/y}\n    max_keys: 1\n"
            "    allow: [{provider: random, max_ttl: 1m}]\n",
            2,  # a name given twice: the `rules:` line, where both are
            "'ci'",
        ),
        ("    max_keys: 2\n", "    max_keys: 2\n    max_keys: 3\n", 6, "duplicate key"),
        ("    max_keys: 2\n", "    max_keys: [2\n", 6, "not valid YAML"),
    ],
)
def test_an_invalid_policy_is_refused_naming_its_line(
    old: str, new: str, line: int, says: str
) -> None:
    assert old in GOOD
    with pytest.raises(PolicyError) as caught:
        parse_policy(GOOD.replace(old, new, 1), "p.yml")
    assert caught.value.line == line, caught.value.cause
    assert caught.value.cause.startswith(f"p.yml, line {line}")
    assert says in caught.value.cause


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ("{provider: postgres, max_ttl: 1h}", "`connection` is missing"),
        ("{provider: mysql, connection: db, max_ttl: 1h, privileges: [ALL]}", "'ALL'"),
        ("{provider: mysql, connection: db, max_ttl: 1h, privileges: [SUPER]}", "'SUPER'"),
        ("{provider: redis, connection: c, max_ttl: 1h, categories: ['@admin']}", "'@admin'"),
        ("{provider: redis, connection: c, max_ttl: 1h, key_prefixes: ['ci:*']}", "'ci:*'"),
        ("{provider: redis, connection: c, max_ttl: 1h, key_prefixes: ['']}", "prefix"),
        ("{provider: http, connection: i, max_ttl: 1h}", "`template`"),
        ("{provider: http, connection: i, max_ttl: 1h, template: {mint: 3}}", "template"),
        ("{provider: random, max_ttl: 1h, lifetimes: []}", "`lifetimes`"),
    ],
)
def test_each_providers_bounds_are_checked_at_load(section: str, says: str) -> None:
    text = GOOD.replace("      - provider: random\n        max_ttl: 1h\n", f"      - {section}\n")
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yml")
    assert caught.value.line == 7
    assert says in caught.value.cause


@pytest.mark.parametrize(
    "match",
    [
        "{repository: 'acme/*'}",
        "{repository_owner: acme}",
        "{repository_id: 4242}",
        "{repository_id: ['4242', 17]}",
        "{repository: '**', repository_owner: acme}",  # one binding claim suffices
    ],
)
def test_a_rule_bound_to_an_owner_or_an_id_loads(match: str) -> None:
    text = GOOD.replace("    match: {repository: acme/app}\n", f"    match: {match}\n")
    assert parse_policy(text).rules[0].name == "ci"


def test_a_deny_rule_naming_an_unknown_provider_is_refused() -> None:
    """A typo (`postgresql`) would leave a deny rule that never denies."""
    text = GOOD + "deny:\n  - name: d\n    reason: r\n    providers: [postgresql]\n"
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yml")
    assert caught.value.line == 12
    assert "'postgresql' is no provider" in caught.value.cause
    assert parse_policy(text.replace("postgresql", "postgres")).deny[0].providers == ["postgres"]


def test_the_examples_policy_of_the_tests_loads() -> None:
    policy = parse_policy(POLICY)
    assert [r.name for r in policy.rules] == ["app-ci", "legacy"]
    assert [p.provider for p in policy.rules[0].allow] == [
        "postgres",
        "mysql",
        "redis",
        "http",
        "random",
    ]


def test_reload_keeps_the_old_policy_when_the_new_file_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_text(GOOD)
    store = PolicyStore(path)
    first = store.policy
    assert first.rules[0].max_keys == 2

    path.write_text(GOOD.replace("max_keys: 2", "max_keys: nine"))
    error = store.reload()
    assert error is not None
    assert error.line == 5
    assert store.policy is first

    path.unlink()
    error = store.reload()
    assert error is not None
    assert "cannot read" in error.cause
    assert store.policy is first

    path.write_text(GOOD.replace("max_keys: 2", "max_keys: 9"))
    assert store.reload() is None
    assert store.policy.rules[0].max_keys == 9


def test_start_up_refuses_an_invalid_policy_naming_the_setting_and_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_text(GOOD.replace("max_ttl: 1h", "max_ttl: 1h\n        grant: [x]"))
    with pytest.raises(ConfigError) as caught:
        PolicyStore.from_env({POLICY_SETTING: str(path)})
    assert caught.value.setting == POLICY_SETTING
    assert f"{path}, line 9" in caught.value.cause
    assert PolicyStore.from_env({}) is None
    path.write_text(GOOD)
    store = PolicyStore.from_env({POLICY_SETTING: f" {path} "})
    assert store is not None
    assert store.policy.rules[0].name == "ci"
