"""MariaDB (MySQL) for the conformance suite.

Root has an empty password here, but that does not weaken the checks: every account the
provider creates has a password, and MariaDB checks it at each login (a wrong one is refused
with 1045, which `use` shows). The provider's admin is a dedicated user with only CREATE USER,
PROCESS, CONNECTION ADMIN and the privileges it hands out, WITH GRANT OPTION.

The database granted has a `_` in its name and a sibling whose name differs only there: a grant
on `a_b.*` with the `_` unescaped would cover `aXb` too (it is a wildcard in GRANT).
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from runkeys.connections import Connection
from runkeys.providers.base import Minted
from runkeys.providers.mysql import MysqlProvider
from tests.providers.harness import Harness
from tests.services import need, unique

ADMIN_PASSWORD = "my-admin-Secr3t"
ACCESS_DENIED = {1045, 1698}  # with and without a password checked


def connect_url(url: str, **options: Any) -> pymysql.connections.Connection[Any]:
    """Log in with a `mysql://` URL as an application would: every part percent-decoded."""
    parts = urllib.parse.urlsplit(url)
    return pymysql.connections.Connection(
        host=parts.hostname,
        port=parts.port or 3306,
        user=urllib.parse.unquote(parts.username or ""),
        password=urllib.parse.unquote(parts.password or ""),
        database=urllib.parse.unquote(parts.path.lstrip("/")) or None,
        autocommit=True,
        connect_timeout=5,
        **options,
    )


class MysqlHarness(Harness):
    def __init__(self) -> None:
        super().__init__()
        self.root_url = need("mysql")
        base = unique("rk_t")
        self.database, self.sibling = f"{base}_db", f"{base}Xdb"
        self.admin = f"{base}_adm"
        self.provider = MysqlProvider()
        self.connection = Connection(
            "CI_DB", f"mysql://{self.admin}:{ADMIN_PASSWORD}@127.0.0.1:3306/{self.database}"
        )
        self.params = {"grant": [{"database": self.database, "privileges": ["SELECT", "INSERT"]}]}

    def root(self, *statements: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with connect_url(self.root_url) as conn, conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement, args or None)
            return list(cursor.fetchall())

    def setup(self) -> None:
        escaped = self.database.replace("_", "\\_")
        statements = [
            f"CREATE DATABASE `{self.database}`",
            f"CREATE DATABASE `{self.sibling}`",
            f"CREATE TABLE `{self.database}`.items (id int)",
            f"CREATE TABLE `{self.sibling}`.items (id int)",
            f"INSERT INTO `{self.database}`.items VALUES (1), (2)",
            f"CREATE USER '{self.admin}'@'%' IDENTIFIED BY '{ADMIN_PASSWORD}'",
            f"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO '{self.admin}'@'%'",
            f"GRANT SELECT, INSERT ON `{escaped}`.* TO '{self.admin}'@'%' WITH GRANT OPTION",
        ]
        self.root(*statements)

    def use(self, minted: Minted) -> None:
        with connect_url(minted.value) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT CURRENT_USER()")
            assert cursor.fetchone() == (f"{minted.reference}",)
            cursor.execute(f"INSERT INTO `{self.database}`.items VALUES (3)")
            cursor.execute(f"SELECT count(*) FROM `{self.database}`.items")
            assert cursor.fetchone()[0] >= 3
            for refused in (
                f"DELETE FROM `{self.database}`.items",
                f"SELECT * FROM `{self.sibling}`.items",
            ):
                with pytest.raises(pymysql.err.OperationalError, match="denied"):
                    cursor.execute(refused)
        wrong = minted.value.replace(minted.parts["PASSWORD"], "wrong-password")
        with pytest.raises(pymysql.err.OperationalError) as caught:
            connect_url(wrong)
        assert caught.value.args[0] in ACCESS_DENIED

    def refused(self, minted: Minted) -> None:
        with pytest.raises(pymysql.err.OperationalError) as caught:
            connect_url(minted.value)
        assert caught.value.args[0] in ACCESS_DENIED, caught.value

    def hold(self, minted: Minted) -> Callable[[], bool]:
        session = connect_url(minted.value, read_timeout=5)

        def alive() -> bool:
            try:
                session.ping(reconnect=False)
            except pymysql.err.Error:
                return False
            return True

        return alive

    def leftovers(self, reference: str) -> list[str]:
        user = reference.partition("@")[0]
        accounts = self.root("SELECT user, host FROM mysql.user WHERE user = %s", args=(user,))
        sessions = self.root(
            "SELECT id FROM information_schema.PROCESSLIST WHERE user = %s", args=(user,)
        )
        return [f"user {u}@{h}" for u, h in accounts] + [f"session {i}" for (i,) in sessions]

    def injections(self) -> list[dict[str, Any]]:
        db = self.database
        return [
            {"grant": [{"database": "app`.* TO x; --", "privileges": ["SELECT"]}]},
            {"grant": [{"database": "%", "privileges": ["SELECT"]}]},
            {"grant": [{"database": "app%", "privileges": ["SELECT"]}]},
            {"grant": [{"database": db, "table": "t; DROP TABLE t", "privileges": ["SELECT"]}]},
            {"grant": [{"database": db, "privileges": ["SELECT ON *.* TO x"]}]},
            {"grant": [{"database": db, "privileges": ["ALL PRIVILEGES"]}]},
            {"grant": [{"database": db, "privileges": ["GRANT OPTION"]}]},
            {"grant": [{"database": db, "privileges": ["FILE"]}]},
            {"grant": [{"database": db, "table": "items", "privileges": ["EXECUTE"]}]},
            {"host": "%' IDENTIFIED BY 'x"},
            {"host": "a host"},
            {"grant": [{"database": db, "privileges": ["SELECT"], "with": "GRANT OPTION"}]},
            {"grant": [{"database": "mysql", "table": "user", "privileges": ["SELECT"]}]},
            {"grant": [{"database": "Performance_Schema", "privileges": ["SELECT"]}]},
        ]

    def backend_refusal(self) -> dict[str, Any]:
        # A database the admin holds no GRANT OPTION on: the server refuses the grant after the
        # user was created, so the provider must drop the user again.
        return {"grant": [{"database": self.sibling, "privileges": ["SELECT"]}]}

    def cleanup(self) -> None:
        for user in [*self.labels, self.admin]:
            self.root(f"DROP USER IF EXISTS '{user}'@'%'")
            for (thread,) in self.root(
                "SELECT id FROM information_schema.PROCESSLIST WHERE user = %s", args=(user,)
            ):
                with contextlib.suppress(pymysql.err.OperationalError):  # it ended meanwhile
                    self.root(f"KILL CONNECTION {int(thread)}")
        self.root(f"DROP DATABASE IF EXISTS `{self.database}`")
        self.root(f"DROP DATABASE IF EXISTS `{self.sibling}`")
