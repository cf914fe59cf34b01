"""The `keys` input: every problem found before any side effect, each naming its key and field."""

from __future__ import annotations

from datetime import timedelta

import pytest

from runkeys.connections import Connection
from runkeys.errors import SpecError
from runkeys.leases import Lifetime
from runkeys.spec import SpecRules, parse_keys


def problems(text: str, rules: SpecRules | None = None) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_keys(text, rules)
    return [p.where() + ": " + p.message for p in caught.value.problems]


def test_the_example_from_the_issue_parses() -> None:
    specs = parse_keys(
        "API_TOKEN: {provider: random, ttl: 30m, lifetime: run}\n"
        "SIGNING_SECRET: {provider: random, format: base64url, bytes: 48, lifetime: job}\n"
    )
    assert [s.name for s in specs] == ["API_TOKEN", "SIGNING_SECRET"]
    assert specs[0].ttl == timedelta(minutes=30)
    assert specs[0].lifetime is Lifetime.RUN
    assert specs[1].ttl == timedelta(hours=1)  # the default
    assert specs[1].params == {"format": "base64url", "bytes": 48}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("A: {provider: random, ttl: 30x}", "keys.A.ttl"),
        ("A: {provider: random, ttl: 0m}", "keys.A.ttl"),
        ("A: {provider: random, ttl: 48h}", "keys.A.ttl"),
        ("A: {provider: random, lifetime: forever}", "keys.A.lifetime"),
        ("A: {provider: nope}", "keys.A.provider"),
        ("A: {ttl: 1h}", "keys.A.provider"),
        ("A: {provider: random, colour: red}", "keys.A.colour"),
        ("A: {provider: random, bytes: 8}", "keys.A.bytes"),
        ("A: {provider: random, format: rot13}", "keys.A.format"),
        ("A: {provider: random, connection: db}", "keys.A.connection"),
        ("GITHUB_TOKEN: {provider: random}", "keys.GITHUB_TOKEN"),
        ("1ABC: {provider: random}", "keys.1ABC"),
        ("'BAD-NAME': {provider: random}", "keys.BAD-NAME"),
        ("A: random", "keys.A"),
        ("A: {provider: random}\na: {provider: random}", "keys.a"),
        ("A: {provider: random}\nA: {provider: random}", "keys"),
        ("[1, 2]", "keys"),
        ("A: {provider: random", "keys"),
        ("", "keys"),
    ],
)
def test_each_bad_spec_names_where(text: str, where: str) -> None:
    found = problems(text)
    assert any(p.startswith(where + ":") for p in found), found


@pytest.mark.parametrize(
    "text",
    [
        "A: {provider: random, bytes: !!int x}\n",
        "A: {provider: random, ttl: !!float x}\n",
        "A: !!timestamp x\n",
        "A: {provider: random, format: !!bool x}\n",
        "A: {provider: random}\x07\n",
    ],
)
def test_a_value_yaml_cannot_construct_is_a_spec_error_not_a_crash(text: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_keys(text)
    (problem,) = caught.value.problems
    assert problem.message.startswith("not valid YAML")


def test_all_problems_are_reported_at_once() -> None:
    found = problems("A: {provider: random, ttl: nope}\nB: {provider: gone}\n")
    assert len(found) == 2


def test_pr_lifetime_needs_a_pull_request() -> None:
    text = "A: {provider: random, lifetime: pr}"
    assert problems(text, SpecRules(pull_request=False)) == [
        "keys.A.lifetime: `pr` needs a run triggered by a pull request"
    ]
    assert parse_keys(text, SpecRules(pull_request=True))[0].lifetime is Lifetime.PR


def test_ttl_lifetime_is_accepted_with_an_explicit_ttl() -> None:
    text = "DEPLOY_DATABASE_URL: {provider: postgres, connection: staging, ttl: 24h, lifetime: ttl}"
    (spec,) = parse_keys(text, SpecRules(pull_request=False))
    assert (spec.lifetime, spec.ttl, spec.connection) == (
        Lifetime.TTL,
        timedelta(hours=24),
        "STAGING",
    )
    assert spec.params == {}


def test_ttl_lifetime_needs_a_ttl_and_a_known_lifetime_lists_it() -> None:
    assert problems("A: {provider: random, lifetime: ttl}") == [
        "keys.A.ttl: missing: lifetime `ttl` keeps the key until its TTL runs out, "
        "so it must be set"
    ]
    (unknown,) = problems("A: {provider: random, lifetime: expiry}")
    assert unknown.startswith("keys.A.lifetime: unknown lifetime 'expiry'")
    with pytest.raises(SpecError) as caught:
        parse_keys("A: {provider: random, lifetime: expiry}")
    assert caught.value.problems[0].fix == "use one of: job, run, pr, ttl"


def test_ttl_lifetime_ttl_is_capped_like_any_other() -> None:
    rules = SpecRules(max_ttl=timedelta(hours=24))
    assert problems("A: {provider: random, ttl: 48h, lifetime: ttl}", rules) == [
        "keys.A.ttl: 2d is longer than the limit of 1d"
    ]
    wide = SpecRules(max_ttl=timedelta(hours=48))
    assert parse_keys("A: {provider: random, ttl: 48h, lifetime: ttl}", wide)[0].ttl == timedelta(
        hours=48
    )


def test_ttl_cap_is_the_rules_cap() -> None:
    rules = SpecRules(max_ttl=timedelta(minutes=10))
    assert problems("A: {provider: random, ttl: 11m}", rules)[0].startswith("keys.A.ttl:")
    assert parse_keys("A: {provider: random, ttl: 10m}", rules)[0].ttl == timedelta(minutes=10)


def test_a_connection_must_be_set() -> None:
    rules = SpecRules(connections={"CI_DB": Connection("CI_DB", "postgresql://u:p@h/db")})
    # `random` takes none at all; the message says so rather than looking it up.
    assert "takes no connection" in problems("A: {provider: random, connection: ci_db}", rules)[0]
