"""PostgreSQL for the conformance suite.

The machine's pg_hba.conf trusts 127.0.0.1 and the socket: the server lets any existing role in
without asking for a password, so logging in proves the role, its LOGIN and its grants, but not
the password. The password is proven separately: the SCRAM-SHA-256 verifier the server stored for
the role is checked against the minted password by the RFC 5802 computation the server itself
would run (and a wrong password is shown not to match). On a server that does ask for passwords
(`password_enforced`), a wrong password is also refused at login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from runkeys.connections import Connection
from runkeys.providers.base import Minted
from runkeys.providers.postgres import PostgresProvider
from tests.providers.harness import EXPIRES_AT, Harness
from tests.services import need, unique

ADMIN_PASSWORD = "pg-admin-Secr3t"


def scram_matches(verifier: str, password: str) -> bool:
    """Whether a stored `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` is `password`'s."""
    method, _, rest = verifier.partition("$")
    assert method == "SCRAM-SHA-256", f"not a SCRAM verifier: {method}"
    counts, keys = rest.split("$")
    iterations, salt = counts.split(":")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key) and (
        hmac.compare_digest(hmac.digest(salted, b"Server Key", "sha256"), server_key)
    )


class PostgresHarness(Harness):
    def __init__(self) -> None:
        super().__init__()
        self.super_url = need("postgres")
        self.base = unique("rk_t")
        self.group, self.admin, self.schema = f"{self.base}_rw", f"{self.base}_adm", self.base
        self.provider = PostgresProvider()
        self.connection = Connection(
            "CI_DB",
            f"postgresql://{self.admin}:{ADMIN_PASSWORD}@127.0.0.1:5432/test?sslmode=disable",
        )
        self.params = {"grant": [self.group], "connection_limit": 3}
        self.login_checked_password = False

    def _superuser(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.super_url, autocommit=True)

    def setup(self) -> None:
        """A group role with SELECT on one table and CREATE in the schema, a table it may not
        read, and the provider's admin: CREATEROLE plus ADMIN OPTION on the group, nothing more."""
        group, admin, schema = (sql.Identifier(n) for n in (self.group, self.admin, self.schema))
        with self._superuser() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(group))
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
            conn.execute(sql.SQL("CREATE TABLE {}.items (id int)").format(schema))
            conn.execute(sql.SQL("CREATE TABLE {}.hidden (id int)").format(schema))
            conn.execute(sql.SQL("INSERT INTO {}.items VALUES (1), (2)").format(schema))
            conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(schema, group))
            conn.execute(sql.SQL("GRANT SELECT ON {}.items TO {}").format(schema, group))
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                    admin, sql.Literal(ADMIN_PASSWORD)
                )
            )
            conn.execute(sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(group, admin))

    def stored(self, role: str) -> tuple[Any, ...] | None:
        """What the server keeps for a role: password verifier, expiry, connection limit, login."""
        with self._superuser() as conn:
            return conn.execute(
                "SELECT rolpassword, rolvaliduntil, rolconnlimit, rolcanlogin"
                " FROM pg_authid WHERE rolname = %s",
                (role,),
            ).fetchone()

    def password_enforced(self, minted: Minted) -> bool:
        wrong = minted.value.replace(minted.parts["PASSWORD"], "wrong-password")
        try:
            psycopg.connect(wrong).close()
        except psycopg.OperationalError:
            return True
        return False

    def use(self, minted: Minted) -> None:
        role = minted.reference
        verifier, valid_until, limit, can_login = self.stored(role) or (None, None, None, None)
        assert scram_matches(verifier, minted.parts["PASSWORD"])
        assert not scram_matches(verifier, minted.parts["PASSWORD"] + "x")
        assert valid_until == EXPIRES_AT
        assert limit == 3
        assert can_login
        # Where the server asks for passwords, a wrong one is refused at login as well.
        self.login_checked_password = self.password_enforced(minted)
        schema = sql.Identifier(self.schema)
        with psycopg.connect(minted.value) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}.items").format(schema))
            assert count.fetchone() == (2,)
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}.mine (id int)").format(schema))
            conn.commit()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT * FROM {}.hidden").format(schema))

    def refused(self, minted: Minted) -> None:
        with pytest.raises(psycopg.OperationalError, match=r"does not exist|authentication"):
            psycopg.connect(minted.value).close()

    def hold(self, minted: Minted) -> Callable[[], bool]:
        session = psycopg.connect(minted.value, autocommit=True)

        def alive() -> bool:
            try:
                session.execute("SELECT 1")
            except psycopg.OperationalError:
                return False
            return True

        return alive

    def leftovers(self, reference: str) -> list[str]:
        with self._superuser() as conn:
            roles = conn.execute("SELECT rolname FROM pg_roles WHERE rolname = %s", (reference,))
            found = [f"role {r}" for (r,) in roles.fetchall()]
            sessions = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE usename = %s", (reference,)
            )
            found += [f"session {pid}" for (pid,) in sessions.fetchall()]
        return found

    def owner_of_mine(self) -> str | None:
        with self._superuser() as conn:
            row = conn.execute(
                "SELECT tableowner FROM pg_tables WHERE schemaname = %s AND tablename = 'mine'",
                (self.schema,),
            ).fetchone()
        return None if row is None else str(row[0])

    def injections(self) -> list[dict[str, Any]]:
        return [
            {"grant": ['app_rw"; DROP TABLE users; --']},
            {"grant": ["app_rw, pg_read_server_files"]},
            {"grant": ["app rw"]},
            {"grant": ["1role"]},
            {"grant": ["a" * 64]},
            {"connection_limit": "3; DROP ROLE x"},
            {"grant": [self.group], "valid_until": "infinity"},
            {"grant": [self.group, "pg_execute_server_program"]},
            {"grant": ["PUBLIC"]},
        ]

    def backend_refusal(self) -> dict[str, Any]:
        return {"grant": [f"{self.base}_nosuch"]}

    def cleanup(self) -> None:
        with self._superuser() as conn:
            for role in [*self.labels, self.admin]:
                name = sql.Identifier(role)
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(
                        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                        " WHERE usename = %s",
                        (role,),
                    )
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(name))
                    conn.execute(sql.SQL("DROP ROLE {}").format(name))
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.group)))
