"""How a connection URL is read, to the character: the server it reaches (a `+driver` scheme is
its family's where its driver reads one, a bracketed or upper-case host is one host, a database
is read as its driver reads it) and the URL the driver gets once runkeys' own setting is taken
out (the rest of the query and the fragment kept as written). Expected values written here."""

from __future__ import annotations

import pytest

from runkeys.connections import Connection, Target, load_connections, target_of
from runkeys.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("postgres://u:p@DB.Example/app", Target("postgresql", "db.example", 5432, "app")),
        ("mysql+pymysql://u:p@db/app", Target("mysql", "db", 3306, "app")),
        ("redis+sentinel://u:p@cache:26379/1", Target("redis", "cache", 26379, "1")),
        ("mariadb://u:p@[::1]:3307/app", Target("mysql", "::1", 3307, "app")),
        ("rediss://u:p@cache/", Target("redis", "cache", 6379, "0")),
        ("redis://u:p@cache:6380/2", Target("redis", "cache", 6380, "2")),
        ("mysql://u:p@db/my%20app", Target("mysql", "db", 3306, "my app")),
        ("mysql://u:p@xdbx/XappX", Target("mysql", "xdbx", 3306, "XappX")),
        ("mysql://u:p@db/app?ssl_ca=http://ca.example/", Target("mysql", "db", 3306, "app")),
        ("https://u:p@issuer.example/", Target("https", "issuer.example", 443, "")),
        ("host=db port=6543 dbname=app user=u", Target("postgresql", "db", 6543, "app")),
        ("host=XdbX dbname=app user=u", Target("postgresql", "xdbx", 5432, "app")),
    ],
)
def test_the_server_a_url_reaches(url: str, target: Target) -> None:
    assert target_of(Connection("CI", url)) == target


def test_a_postgresql_url_with_a_driver_is_refused_as_libpq_refuses_it() -> None:
    """libpq, which both sides connect with, reads no `+driver`: the action could not have
    minted through it either. The error quotes nothing of the URL."""
    with pytest.raises(ConfigError) as caught:
        target_of(Connection("CI", "postgresql+psycopg://u:s3cret@db:5433/app"))
    assert caught.value.explain().startswith(
        "RUNKEYS_CONNECTION_CI: cannot be read as a URL or DSN"
    )
    assert "s3cret" not in caught.value.explain()


@pytest.mark.parametrize(
    ("url", "driver_url", "grants"),
    [
        (
            "postgresql://u:p@h/db?sslmode=require&runkeys_grants=app_read#part",
            "postgresql://u:p@h/db?sslmode=require#part",
            {"app_read"},
        ),
        ("postgresql://u:p@h/db?runkeys_grants=a,b#part", "postgresql://u:p@h/db#part", {"a", "b"}),
        (
            "mysql://u:p@h/db?runkeys_grants=a%2Cb&ssl_ca=%2Fca.pem",
            "mysql://u:p@h/db?ssl_ca=%2Fca.pem",
            {"a", "b"},
        ),
        ("redis://u:p@h/0?runkeys_grants=%40read+%2Bget", "redis://u:p@h/0", {"@read +get"}),
        ("redis://u:p@h/0?runkeys_grants=a=b", "redis://u:p@h/0", {"a=b"}),
        ("postgresql://u:p@h/db?runkeys_grants=", "postgresql://u:p@h/db", set()),
        (
            "postgresql://u:p@h/db?sslmode=require&connect_timeout=5&runkeys_grants=a",
            "postgresql://u:p@h/db?sslmode=require&connect_timeout=5",
            {"a"},
        ),
        # A `?` further on in the query does not hide the setting before it.
        (
            "postgresql://u:p@h/db?runkeys_grants=app_read&options=a?b",
            "postgresql://u:p@h/db?options=a?b",
            {"app_read"},
        ),
        ("postgresql://u:p@h/db#runkeys_grants=a", "postgresql://u:p@h/db#runkeys_grants=a", None),
    ],
)
def test_the_url_the_driver_gets_and_the_allow_list(
    url: str, driver_url: str, grants: set[str] | None
) -> None:
    connection = Connection("CI", url)
    assert connection.url == driver_url
    assert connection.grants == (None if grants is None else frozenset(grants))


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"RUNKEYS_CONNECTION_9X": "postgresql://u:p@h/db"},
            "RUNKEYS_CONNECTION_9X: is not a valid connection name\n\n"
            "How to fix: use letters, digits, _",
        ),
        (
            {"RUNKEYS_CONNECTION_CI": "  "},
            "RUNKEYS_CONNECTION_CI: is empty\n\nHow to fix: set it to the connection's URL or DSN",
        ),
    ],
)
def test_a_bad_connection_variable_is_named_with_its_fix(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_connections(environ)
    assert caught.value.explain() == message


def test_an_unknown_scheme_or_setting_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        target_of(Connection("ci-db", "ftp://u:p@h/db"))
    assert caught.value.explain() == (
        "RUNKEYS_CONNECTION_CI_DB: has a URL scheme runkeys does not know"
    )
    with pytest.raises(ConfigError) as caught:
        Connection("ci-db", "postgresql://u:p@h/db?runkeys_grant=a")
    assert caught.value.explain().startswith(
        "RUNKEYS_CONNECTION_CI_DB: unknown runkeys setting 'runkeys_grant' in its URL"
    )


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://user:s3cret@db:5433/app?x=1", "postgresql://user:***@db:5433/app?x=1"),
        ("redis://:s3cret@cache/0", "redis://:***@cache/0"),
        ("mysql://user:s3cret@db/app", "mysql://user:***@db/app"),
        ("mysql://user@db/app", "mysql://user@db/app"),
    ],
)
def test_a_connection_shows_its_url_without_the_password(url: str, redacted: str) -> None:
    assert Connection("CI", url).redacted() == redacted
