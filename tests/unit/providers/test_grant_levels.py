"""A `mysql` grant is checked at its level: a privilege that exists only for a whole database
(routines, events, locks, temporary tables) is refused on one table, and accepted on the
database; the refusal names the level. No server: `check_params` alone decides."""

from __future__ import annotations

from typing import Any

import pytest

from runkeys.errors import ParamError
from runkeys.providers.mysql import MysqlProvider

DATABASE_ONLY = [
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "EXECUTE",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EVENT",
]


def grant(privilege: str, table: str | None = None) -> dict[str, Any]:
    made: dict[str, Any] = {"database": "app", "privileges": ["SELECT", privilege]}
    if table is not None:
        made["table"] = table
    return made


@pytest.mark.parametrize("privilege", DATABASE_ONLY)
def test_a_database_privilege_is_granted_on_a_database(privilege: str) -> None:
    MysqlProvider().check_params({"grant": [grant(privilege)]})


@pytest.mark.parametrize("privilege", DATABASE_ONLY)
def test_a_database_privilege_is_refused_on_a_table(privilege: str) -> None:
    with pytest.raises(ParamError) as caught:
        MysqlProvider().check_params({"grant": [grant("SELECT"), grant(privilege, "users")]})
    assert caught.value.field == "grant[1].privileges"
    assert caught.value.cause == f"{privilege!r} cannot be granted on a table by runkeys"


def test_a_server_privilege_is_refused_naming_the_database_level() -> None:
    with pytest.raises(ParamError) as caught:
        MysqlProvider().check_params({"grant": [grant("SUPER")]})
    assert caught.value.cause == "'SUPER' cannot be granted on a database by runkeys"


def test_a_privilege_is_read_without_case_or_extra_spaces() -> None:
    MysqlProvider().check_params(
        {"grant": [{"database": "app", "privileges": ["lock   tables", " select "]}]}
    )
    with pytest.raises(ParamError, match="cannot be granted on a table"):
        MysqlProvider().check_params(
            {"grant": [{"database": "app", "table": "t", "privileges": ["lock   tables"]}]}
        )
