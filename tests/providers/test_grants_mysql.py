"""What a `mysql` key may be granted: never on the server's own schemas, never server-wide,
whatever the connection's account could hand out (root, here, as an audit found one
configured); the almost-right names are granted. Revoke drops the user whatever grants someone
added by hand."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from runkeys.connections import Connection
from runkeys.errors import ParamError, ProviderError
from runkeys.providers.mysql import MysqlProvider
from tests.providers.harness import assert_clean
from tests.providers.harness_mysql import MysqlHarness, connect_url
from tests.providers.test_conformance import wait_until
from tests.services import need

pytestmark = pytest.mark.services


def grant(database: str, *privileges: str, table: str | None = None) -> dict[str, Any]:
    made: dict[str, Any] = {"database": database, "privileges": list(privileges or ["SELECT"])}
    if table is not None:
        made["table"] = table
    return made


@pytest.mark.parametrize(
    "database",
    [
        "mysql",
        "MySQL",
        "MYSQL",
        "sys",
        "SYS",
        "performance_schema",
        "Performance_Schema",
        "information_schema",
        "INFORMATION_SCHEMA",
    ],
)
@pytest.mark.parametrize("table", [None, "user"])
def test_the_servers_own_schemas_are_refused(database: str, table: str | None) -> None:
    params = {"grant": [grant("app"), grant(database, table=table)]}
    with pytest.raises(ParamError) as caught:
        MysqlProvider().check_params(params)
    assert caught.value.field == "grant[1].database"
    assert (
        caught.value.cause
        == f"{database!r} is the server's own schema: a test key gets no grant on it"
    )


@pytest.mark.parametrize(
    "spelling",
    [
        "`mysql`",
        "mysql.*",
        "*",
        "*.*",
        "mysq%",
        "my%",
        "mysql ",
        " mysql",
        "`performance_schema`",
        "information_schema.tables",
    ],
)
def test_other_spellings_of_them_are_not_names_at_all(spelling: str) -> None:
    """Quotes, wildcards and dotted names are refused as names: only plain identifiers reach a
    grant, quoted by runkeys, `_` escaped."""
    with pytest.raises(ParamError, match="not a plain identifier"):
        MysqlProvider().check_params({"grant": [grant(spelling)]})


@pytest.mark.parametrize(
    "privilege",
    [
        *("SUPER", "FILE", "PROCESS", "RELOAD", "SHUTDOWN", "GRANT OPTION", "CREATE USER"),
        *("ALL", "ALL PRIVILEGES", "REPLICATION SLAVE", "BINLOG ADMIN", "CONNECTION ADMIN"),
        "USAGE",
    ],
)
def test_server_wide_privileges_are_refused(privilege: str) -> None:
    with pytest.raises(ParamError, match="cannot be granted") as caught:
        MysqlProvider().check_params({"grant": [grant("app", "SELECT", privilege)]})
    assert caught.value.field == "grant[0].privileges"


@pytest.mark.parametrize(
    "database", ["mysql_app", "app_mysql", "sysadmin", "mysqlx", "information_schemas", "sys_"]
)
def test_names_that_are_almost_those_pass(database: str) -> None:
    MysqlProvider().check_params({"grant": [grant(database)]})


class RootHarness(MysqlHarness):
    """The harness minting through root, and with a database whose name starts `mysql_`."""

    def __init__(self) -> None:
        super().__init__()
        self.near = f"mysql_{self.database}"
        server = need("mysql").rsplit("/", 1)[0]
        self.connection = Connection("CI_DB", f"{server}/{self.near}")

    def setup(self) -> None:
        super().setup()
        self.root(f"CREATE DATABASE `{self.near}`", f"CREATE TABLE `{self.near}`.t (id int)")

    def cleanup(self) -> None:
        with contextlib.suppress(pymysql.err.Error):
            self.root(f"DROP DATABASE IF EXISTS `{self.near}`")
        super().cleanup()


@pytest.fixture
def as_root() -> Iterator[RootHarness]:
    harness = RootHarness()
    try:
        harness.setup()
        yield harness
    finally:
        harness.cleanup()


@pytest.mark.parametrize("database", ["mysql", "performance_schema", "sys"])
def test_a_grant_on_a_system_schema_mints_nothing_even_through_root(
    as_root: RootHarness, database: str
) -> None:
    label = as_root.label()
    with pytest.raises(ParamError):
        as_root.mint(
            {"grant": [grant(database, table="user" if database == "mysql" else None)]}, label=label
        )
    assert as_root.leftovers(label) == []


def test_the_almost_right_database_is_granted_and_nothing_more(as_root: RootHarness) -> None:
    minted = as_root.mint({"grant": [grant(as_root.near)]})
    with connect_url(minted.value) as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM `{as_root.near}`.t")
        for refused in ("SELECT count(*) FROM mysql.user", "SELECT * FROM mysql.db"):
            with pytest.raises(pymysql.err.OperationalError, match="denied"):
                cursor.execute(refused)
    as_root.revoke(minted, params={})
    assert as_root.leftovers(minted.reference) == []


def test_revoke_drops_a_user_whatever_was_granted_to_it_by_hand(mysql: MysqlHarness) -> None:
    """Grants on the system schema, server-wide privileges and a role, none of them asked for:
    the least-privileged admin's revoke still drops the user."""
    minted = mysql.mint()
    user = minted.parts["USER"]
    role = f"{mysql.database}_role"
    mysql.root(f"CREATE ROLE `{role}`")
    try:
        mysql.root(
            f"GRANT SELECT ON mysql.* TO `{user}`@`%`",
            f"GRANT PROCESS, RELOAD ON *.* TO `{user}`@`%`",
            f"GRANT `{role}` TO `{user}`@`%`",
        )
        session = mysql.hold(minted)
        mysql.revoke(minted)
        assert mysql.leftovers(minted.reference) == []
        assert wait_until(lambda: not session()), "a session of the dropped user lives on"
        mysql.refused(minted)
    finally:
        mysql.root(f"DROP ROLE IF EXISTS `{role}`")


def test_the_allow_list_narrows_the_databases(mysql: MysqlHarness) -> None:
    assert mysql.connection is not None
    narrowed = Connection("CI_DB", mysql.connection.url + f"?runkeys_grants={mysql.database}")
    label = mysql.label()
    with pytest.raises(ProviderError) as caught:
        mysql.mint({"grant": [grant(mysql.sibling)]}, connection=narrowed, label=label)
    assert not caught.value.retryable
    assert caught.value.cause == (
        f"mysql: refusing to mint: grant[0].database: '{mysql.sibling}' is not among the "
        f"databases RUNKEYS_CONNECTION_CI_DB allows (runkeys_grants: {mysql.database})"
    )
    assert_clean(caught.value, mysql.secrets())
    assert mysql.leftovers(label) == []
    # What it allows is minted through the same URL: the driver never saw the setting.
    minted = mysql.mint(connection=narrowed)
    mysql.use(minted)
    mysql.revoke(minted, connection=narrowed)
    assert mysql.leftovers(minted.reference) == []
