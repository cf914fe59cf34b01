"""A connection's own settings (`runkeys_grants`, its allow list): read from the URL, taken out
of it before any driver sees it, and refused when misspelt rather than ignored."""

from __future__ import annotations

import pytest

from runkeys.connections import Connection, load_connections
from runkeys.errors import ConfigError, SpecError
from runkeys.spec import SpecRules, parse_keys

PASSWORD = "s3cret-Pw"


@pytest.mark.parametrize(
    ("url", "driver_url", "grants"),
    [
        (
            f"postgresql://ci:{PASSWORD}@db:5432/app?sslmode=require&runkeys_grants=app_rw,app_ro",
            f"postgresql://ci:{PASSWORD}@db:5432/app?sslmode=require",
            {"app_rw", "app_ro"},
        ),
        (
            f"postgresql://ci:{PASSWORD}@db/app?runkeys_grants=app_rw&sslmode=require",
            f"postgresql://ci:{PASSWORD}@db/app?sslmode=require",
            {"app_rw"},
        ),
        (
            f"mysql://ci:{PASSWORD}@db/app?runkeys_grants=app%2C%20audit",
            f"mysql://ci:{PASSWORD}@db/app",
            {"app", "audit"},
        ),
        (
            f"redis://ci:{PASSWORD}@cache:6379/0?runkeys_grants=",
            f"redis://ci:{PASSWORD}@cache:6379/0",
            set(),
        ),
        (
            f"redis://ci:{PASSWORD}@cache:6379/0?runkeys_grants=@read,,get,",
            f"redis://ci:{PASSWORD}@cache:6379/0",
            {"@read", "get"},
        ),
    ],
)
def test_the_allow_list_is_read_and_taken_out_of_the_url(
    url: str, driver_url: str, grants: set[str]
) -> None:
    (connection,) = load_connections({"RUNKEYS_CONNECTION_CI": url}).values()
    assert connection.url == driver_url
    assert connection.grants == frozenset(grants)
    assert "runkeys" not in connection.parsed.query
    # However it is made: a Connection never holds the setting in what the driver gets.
    assert Connection("CI", url) == connection


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://ci:{PASSWORD}@db/app?sslmode=require&&application_name=x",
        f"postgresql://ci:{PASSWORD}@db/app?",
        "host=db dbname=app user=ci",
        f"redis://ci:{PASSWORD}@cache:6379/0",
        f"mysql://ci:{PASSWORD}@db/app?ssl_ca=/etc/ca.pem#frag",
    ],
)
def test_a_url_without_runkeys_settings_is_left_exactly_as_it_is(url: str) -> None:
    connection = Connection("CI", url)
    assert connection.url == url
    assert connection.grants is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"postgresql://ci:{PASSWORD}@db/app?runkeys_grant=app_rw", "unknown runkeys setting"),
        (f"postgresql://ci:{PASSWORD}@db/app?RUNKEYS_GRANTS=app_rw", "unknown runkeys setting"),
        (f"postgresql://ci:{PASSWORD}@db/app?runkeys_roles=app_rw", "unknown runkeys setting"),
        (
            f"postgresql://ci:{PASSWORD}@db/app?runkeys_grants=a&runkeys_grants=b",
            "given twice",
        ),
        (f"host=db password={PASSWORD} runkeys_grants=app_rw", "need the URL form"),
        (f"host=db password={PASSWORD}  RUNKEYS_GRANTS = app_rw", "need the URL form"),
    ],
)
def test_a_misspelt_or_misplaced_setting_is_refused_not_ignored(url: str, expected: str) -> None:
    """An allow list that is not read would allow everything: refused when the connection is
    loaded, naming the variable and never quoting its URL."""
    with pytest.raises(ConfigError, match=expected) as caught:
        load_connections({"RUNKEYS_CONNECTION_CI_DB": url})
    assert caught.value.setting == "RUNKEYS_CONNECTION_CI_DB"
    assert PASSWORD not in caught.value.explain()


def test_the_setting_is_not_the_password() -> None:
    """A password that looks like a setting is still the password."""
    url = "postgresql://ci:runkeys_grants%3Dx@db/app"
    connection = Connection("CI", url)
    assert (connection.url, connection.grants, connection.password) == (
        url,
        None,
        "runkeys_grants=x",
    )


def rules(url: str) -> SpecRules:
    return SpecRules(connections={"CI_DB": Connection("CI_DB", url)})


def problems(text: str, url: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_keys(text, rules(url))
    return [f"{p.where()}: {p.message}" for p in caught.value.problems]


PG = f"postgresql://ci:{PASSWORD}@db/app?runkeys_grants=app_rw,app_ro"


def test_the_spec_is_held_to_its_connections_allow_list() -> None:
    (ok,) = parse_keys("A: {provider: postgres, connection: ci_db, grant: [app_ro]}", rules(PG))
    assert ok.params == {"grant": ["app_ro"]}
    assert problems(
        "A: {provider: postgres, connection: ci_db, grant: [app_ro, app_owner]}", PG
    ) == [
        "keys.A.grant: 'app_owner' is not among the roles RUNKEYS_CONNECTION_CI_DB allows "
        "(runkeys_grants: app_ro, app_rw)"
    ]
    # Exact names: the allow list is not a prefix, nor folded to lower case.
    assert problems("A: {provider: postgres, connection: ci_db, grant: [app_r]}", PG)
    assert problems("A: {provider: postgres, connection: ci_db, grant: [App_rw]}", PG)
    assert problems("A: {provider: postgres, connection: ci_db, grant: [app_rw2]}", PG)


def test_an_empty_allow_list_allows_no_grant_at_all() -> None:
    url = f"postgresql://ci:{PASSWORD}@db/app?runkeys_grants="
    assert parse_keys("A: {provider: postgres, connection: ci_db}", rules(url))
    assert problems("A: {provider: postgres, connection: ci_db, grant: [app_ro]}", url) == [
        "keys.A.grant: 'app_ro' is not among the roles RUNKEYS_CONNECTION_CI_DB allows "
        "(runkeys_grants: nothing)"
    ]


def test_the_connections_own_account_is_refused_from_the_spec() -> None:
    url = f"postgresql://runkeys_admin:{PASSWORD}@db/app"
    found = problems("A: {provider: postgres, connection: ci_db, grant: [runkeys_admin]}", url)
    assert found == [
        "keys.A.grant: 'runkeys_admin' is the connection's own account: a key must not hold "
        "its powers"
    ]
    # A key=value DSN names its user too.
    dsn = f"host=db user=runkeys_admin password={PASSWORD}"
    assert problems("A: {provider: postgres, connection: ci_db, grant: [runkeys_admin]}", dsn)


def test_mysql_allows_databases_and_redis_categories_and_commands() -> None:
    my = f"mysql://ci:{PASSWORD}@db/app?runkeys_grants=app"
    assert parse_keys(
        "A: {provider: mysql, connection: ci_db, grant: [{database: app, privileges: [SELECT]}]}",
        rules(my),
    )
    assert problems(
        "A: {provider: mysql, connection: ci_db, grant: [{database: app, privileges: [SELECT]},"
        " {database: audit, table: events, privileges: [SELECT]}]}",
        my,
    ) == [
        "keys.A.grant[1].database: 'audit' is not among the databases RUNKEYS_CONNECTION_CI_DB "
        "allows (runkeys_grants: app)"
    ]
    cache = f"redis://ci:{PASSWORD}@cache/0?runkeys_grants=@read,@write,get"
    assert parse_keys(
        "A: {provider: redis, connection: ci_db, categories: [read, '+@write'],"
        " commands: [get, -del]}",
        rules(cache),
    )
    assert problems("A: {provider: redis, connection: ci_db, categories: [scripting]}", cache) == [
        "keys.A.categories: '@scripting' is not among the categories RUNKEYS_CONNECTION_CI_DB "
        "allows (runkeys_grants: @read, @write, get)"
    ]
    # `get` the command is allowed; `get` is no category, and `@read` is no command.
    assert problems("A: {provider: redis, connection: ci_db, commands: [read]}", cache)
    assert problems("A: {provider: redis, connection: ci_db, commands: [set]}", cache)


def test_a_provider_without_an_allow_list_refuses_one() -> None:
    """An operator who sets an allow list on a connection whose provider has none learns so,
    instead of believing every key through it is narrowed."""
    url = f"https://ci:{PASSWORD}@issuer.example/api/?runkeys_grants=tokens"
    text = (
        "A: {provider: http, connection: ci_db, mint: {path: /t}, revoke: {path: '/t/{reference}'},"
        " response: {value: token, reference: id}}"
    )
    assert problems(text, url) == [
        "keys.A.connection: RUNKEYS_CONNECTION_CI_DB sets runkeys_grants, which the http "
        "provider does not use"
    ]
    assert parse_keys(text, rules(url.partition("?")[0]))


def test_an_allow_list_of_redis_categories_is_read_before_the_url_is_checked() -> None:
    """`@read` in runkeys' own setting is no `@` of the URL: no client ever sees it; a raw `@`
    in the password is still refused."""
    loaded = load_connections(
        {"RUNKEYS_CONNECTION_CACHE": "redis://:pw@127.0.0.1:6379/0?runkeys_grants=@read,get"}
    )
    assert loaded["CACHE"].url == "redis://:pw@127.0.0.1:6379/0"
    assert loaded["CACHE"].grants == frozenset({"@read", "get"})
    with pytest.raises(ConfigError, match="RUNKEYS_CONNECTION_CACHE"):
        load_connections(
            {"RUNKEYS_CONNECTION_CACHE": "redis://:p@ss@127.0.0.1:6379/0?runkeys_grants=@read"}
        )
