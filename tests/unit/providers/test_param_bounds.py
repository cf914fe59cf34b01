"""The database providers' parameters at their bounds, each refusal naming its field: a
connection limit from 1 to 1000, a MariaDB host pattern, a role named once, an allow list
that names the field it refused. No server: `check_params` and `check_allowed` alone decide."""

from __future__ import annotations

from typing import Any

import pytest

from runkeys.connections import Connection
from runkeys.errors import ParamError
from runkeys.providers.mysql import MysqlProvider
from runkeys.providers.postgres import PostgresProvider

PROVIDERS = [PostgresProvider(), MysqlProvider()]


def refusal(check: Any, *args: Any) -> ParamError:
    with pytest.raises(ParamError) as caught:
        check(*args)
    return caught.value


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_a_connection_limit_is_from_1_to_1000(provider: Any) -> None:
    for limit in (1, 1000):
        provider.check_params({"connection_limit": limit})
    for limit in (0, 1001, -1):
        error = refusal(provider.check_params, {"connection_limit": limit})
        assert (error.field, error.cause) == (
            "connection_limit",
            f"must be between 1 and 1000, not {limit}",
        )
    error = refusal(provider.check_params, {"connection_limit": "5"})
    assert (error.field, error.cause) == ("connection_limit", "must be a whole number, not '5'")


@pytest.mark.parametrize("host", ["%", "10.0.0.%", "db.example", "10.0.0.0/255.255.255.0", "::1"])
def test_a_mysql_host_pattern_is_accepted(host: str) -> None:
    MysqlProvider().check_params({"host": host})


@pytest.mark.parametrize("host", ["db example", "db'; --", "", "h" * 256, "db`"])
def test_a_mysql_host_that_is_no_pattern_is_refused(host: str) -> None:
    error = refusal(MysqlProvider().check_params, {"host": host})
    assert (error.field, error.cause) == ("host", f"{host!r} is not a host pattern")


def test_a_mysql_host_that_is_no_text_is_refused() -> None:
    error = refusal(MysqlProvider().check_params, {"host": 5})
    assert (error.field, error.cause) == ("host", "must be a string, not 5")


def test_a_postgres_role_named_twice_or_unquotable_is_refused() -> None:
    error = refusal(PostgresProvider().check_params, {"grant": ["app_read", "app_read"]})
    assert (error.field, error.cause) == ("grant", "names a role twice")
    error = refusal(PostgresProvider().check_params, {"grant": ["app read"]})
    assert error.field == "grant"


def test_an_allow_list_refusal_names_the_grant_field() -> None:
    connection = Connection("CI", "postgresql://ci:pw@db/app?runkeys_grants=app_read")
    error = refusal(PostgresProvider().check_allowed, {"grant": ["app_write"]}, connection)
    assert error.field == "grant"
    mysql = Connection("CI", "mysql://ci:pw@db/app?runkeys_grants=app")
    MysqlProvider().check_allowed({}, mysql)  # no grant: nothing to check
    error = refusal(
        MysqlProvider().check_allowed,
        {"grant": [{"database": "other", "privileges": ["SELECT"]}]},
        mysql,
    )
    assert error.field == "grant[0].database"
