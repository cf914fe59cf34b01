"""What a `postgres` key may be granted, against the real server, through the least-privileged
admin and through a superuser connection (as an audit found one configured): superusers, roles
with CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS, PostgreSQL's own roles, the connection's
own role, and every role that is a member of one of them are refused before a role exists; a
plain group role, however named, is granted. And revoke succeeds whatever memberships someone
gave the key by hand."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from runkeys.connections import Connection
from runkeys.errors import ParamError, ProviderError
from runkeys.providers.base import Minted, MintRequest
from runkeys.providers.postgres import PostgresProvider
from runkeys.providers.postgres_grants import refuse_forbidden_grants
from tests.providers.harness import EXPIRES_AT, assert_clean
from tests.providers.harness_postgres import PostgresHarness
from tests.providers.test_conformance import wait_until
from tests.services import need

pytestmark = pytest.mark.services


class Roles:
    """Roles a test makes as the superuser, dropped afterwards."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.made: list[str] = []

    def sql(self, statement: str | sql.Composed, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(need("postgres"), autocommit=True) as conn:
            cursor = conn.execute(statement, args)
            return cursor.fetchall() if cursor.description else []

    def make(self, suffix: str, attributes: str = "", *, member_of: str | None = None) -> str:
        name = f"{self.base}_{suffix}"
        self.sql(sql.SQL("CREATE ROLE {} NOLOGIN " + attributes).format(sql.Identifier(name)))
        self.made.append(name)
        if member_of is not None:
            self.grant(member_of, name)
        return name

    def grant(self, role: str, member: str) -> None:
        self.sql(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(member)))

    def member_of(self, member: str, role: str) -> bool:
        query = "SELECT pg_has_role(%s, %s, 'MEMBER')"
        return bool(self.sql(query, member, role)[0][0])

    def drop(self) -> None:
        for name in reversed(self.made):
            self.sql(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def roles(postgres: PostgresHarness) -> Iterator[Roles]:
    made = Roles(postgres.base)
    try:
        yield made
    finally:
        made.drop()


def superuser_connection() -> Connection:
    return Connection("CI_DB", need("postgres"))


def mint_unchecked(postgres: PostgresHarness, grant: list[str], connection: Connection) -> str:
    """Straight to `mint`, past the spec check: what the server-side check alone refuses. The
    label it tried, which must name nothing afterwards."""
    label = postgres.label()
    request = MintRequest("DATABASE_URL", {"grant": grant}, EXPIRES_AT, label, connection)
    postgres.provider.mint(request)
    return label


def refused_at_mint(
    postgres: PostgresHarness, grant: list[str], connection: Connection | None = None
) -> str:
    """The mint is refused for good, names the grant, and leaves no role; its message."""
    label = postgres.label()
    request = MintRequest(
        "DATABASE_URL", {"grant": grant}, EXPIRES_AT, label, connection or postgres.connection
    )
    with pytest.raises(ProviderError) as caught:
        postgres.provider.mint(request)
    assert not caught.value.retryable
    assert postgres.leftovers(label) == []
    assert_clean(caught.value, postgres.secrets())
    return caught.value.cause


# -- from the spec alone ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("pg_execute_server_program", "PostgreSQL's predefined roles"),
        ("pg_read_server_files", "PostgreSQL's predefined roles"),
        ("pg_write_server_files", "PostgreSQL's predefined roles"),
        ("pg_read_all_data", "PostgreSQL's predefined roles"),
        ("PG_READ_SERVER_FILES", "PostgreSQL's predefined roles"),
        ("Pg_signal_backend", "PostgreSQL's predefined roles"),
        # The server reserves the whole prefix: no role of the application can be named so.
        ("pg_app", "PostgreSQL's predefined roles"),
        ("public", "not a role a key can be a member of"),
        ("PUBLIC", "not a role a key can be a member of"),
        ("none", "not a role a key can be a member of"),
    ],
)
def test_names_refused_from_the_spec(role: str, expected: str) -> None:
    with pytest.raises(ParamError, match=expected) as caught:
        PostgresProvider().check_params({"grant": ["app_rw", role]})
    assert caught.value.field == "grant"
    assert role in caught.value.cause


@pytest.mark.parametrize("role", ["pgapp", "app_pg_reader", "apg_x", "publicity", "nonexistent"])
def test_names_that_are_almost_those_pass_the_spec_check(role: str) -> None:
    PostgresProvider().check_params({"grant": [role]})


def test_the_server_reserves_the_pg_prefix_as_the_check_assumes(roles: Roles) -> None:
    with pytest.raises(psycopg.errors.ReservedName):
        roles.sql(sql.SQL("CREATE ROLE {}").format(sql.Identifier(f"pg_{roles.base}")))


# -- on the server, in the transaction that would create the role ----------------------------


@pytest.mark.parametrize(
    "attribute", ["SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS"]
)
def test_a_role_with_a_power_no_key_should_have_is_refused(
    postgres: PostgresHarness, roles: Roles, attribute: str
) -> None:
    powerful = roles.make(attribute.lower(), attribute)
    for connection in (postgres.connection, superuser_connection()):
        cause = refused_at_mint(postgres, [postgres.group, powerful], connection)
        assert cause == f"postgres: refusing to grant {powerful}: it has {attribute}"


def test_a_role_that_is_a_member_of_a_forbidden_one_is_refused(
    postgres: PostgresHarness, roles: Roles
) -> None:
    """Membership passes on what a role can become (SET ROLE), so a plain role that is a member
    of a superuser, two levels down, is refused like the superuser itself."""
    root = roles.make("su", "SUPERUSER")
    middle = roles.make("middle", member_of=root)
    outer = roles.make("outer", member_of=middle)
    assert refused_at_mint(postgres, [outer], superuser_connection()) == (
        f"postgres: refusing to grant {outer}: it is a member of {root}, which has SUPERUSER"
    )
    files = roles.make("files", member_of="pg_read_server_files")
    assert refused_at_mint(postgres, [files]) == (
        f"postgres: refusing to grant {files}: it is a member of pg_read_server_files, which "
        "is one of PostgreSQL's own roles"
    )


def test_the_copy_to_program_attack_is_refused_and_impossible(postgres: PostgresHarness) -> None:
    """The audit's spec, through a superuser connection and past the spec check."""
    connection = superuser_connection()
    expected = {
        "pg_execute_server_program": "postgres: refusing to grant pg_execute_server_program: "
        "it is one of PostgreSQL's own roles",
        "pg_read_server_files": "postgres: refusing to grant pg_read_server_files: it is one "
        "of PostgreSQL's own roles",
        # Named in the connection's URL: refused before the server is asked.
        "postgres": "postgres: refusing to mint: grant: 'postgres' is the connection's own "
        "account: a key must not hold its powers",
    }
    for grant, cause in expected.items():
        assert refused_at_mint(postgres, [postgres.group, grant], connection) == cause
    with psycopg.connect(connection.url) as conn, pytest.raises(ProviderError) as caught:
        refuse_forbidden_grants(conn, [postgres.group, "postgres"])
    assert caught.value.cause == (
        "postgres: refusing to grant postgres: it is the connection's own account"
    )
    minted = postgres.provider.mint(
        MintRequest("K", {"grant": [postgres.group]}, EXPIRES_AT, postgres.label(), connection)
    )
    with psycopg.connect(minted.value, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("COPY (SELECT 1) TO PROGRAM 'true'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pg_read_file('/etc/hostname')")
    postgres.revoke(minted, connection=connection)


def test_the_connections_own_role_and_roles_inside_it_are_refused(
    postgres: PostgresHarness, roles: Roles
) -> None:
    """A role that is a member of the connection's account would hand the key its CREATEROLE
    and every grant it administers; the server-side check finds it whatever the URL says."""
    inside = roles.make("inside", member_of=postgres.admin)
    deeper = roles.make("deeper", member_of=inside)
    assert refused_at_mint(postgres, [deeper]) == (
        f"postgres: refusing to grant {deeper}: it is a member of {postgres.admin}, which is "
        "the connection's own account"
    )
    assert postgres.connection is not None
    with psycopg.connect(postgres.connection.url) as conn, pytest.raises(ProviderError) as caught:
        refuse_forbidden_grants(conn, [postgres.admin])
    assert caught.value.cause == (
        f"postgres: refusing to grant {postgres.admin}: it is the connection's own account"
    )
    # And so is a mint of it, whichever check comes first.
    with pytest.raises(ProviderError, match="the connection's own account"):
        mint_unchecked(postgres, [postgres.admin], postgres.connection)


def test_a_role_that_does_not_exist_is_named(postgres: PostgresHarness) -> None:
    """`Postgres` is not `postgres`: names are quoted, so the case is the name's."""
    assert refused_at_mint(postgres, ["Postgres"], superuser_connection()) == (
        "postgres: refusing to grant Postgres: no role of that name exists on this server"
    )


def test_plain_roles_however_named_are_granted(postgres: PostgresHarness, roles: Roles) -> None:
    """The almost-right ones: a plain role with a capital in its name, a role inside the
    granted group (the group itself has the connection's account as a member)."""
    shouty = roles.make("X")
    capital = f"{postgres.base}_X"
    assert shouty == capital
    nested = roles.make("nested", member_of=postgres.group)
    for connection in (postgres.connection, superuser_connection()):
        assert connection is not None
        minted = postgres.provider.mint(
            MintRequest(
                "K",
                {"grant": [postgres.group, capital, nested]},
                EXPIRES_AT,
                postgres.label(),
                connection,
            )
        )
        assert roles.member_of(minted.reference, capital)
        assert roles.member_of(minted.reference, nested)
        assert not roles.member_of(minted.reference, postgres.admin)
        assert not roles.member_of(minted.reference, "pg_read_server_files")
        postgres.revoke(minted, connection=connection)
        assert postgres.leftovers(minted.reference) == []


def test_the_allow_list_narrows_what_the_connection_grants(
    postgres: PostgresHarness, roles: Roles
) -> None:
    other = roles.make("other")
    roles.sql(
        sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(
            sql.Identifier(other), sql.Identifier(postgres.admin)
        )
    )
    assert postgres.connection is not None
    narrowed = Connection("CI_DB", postgres.connection.url + f"&runkeys_grants={postgres.group}")
    assert "runkeys" not in narrowed.url
    with pytest.raises(ProviderError) as caught:
        mint_unchecked(postgres, [other], narrowed)
    assert not caught.value.retryable
    assert f"'{other}' is not among the roles RUNKEYS_CONNECTION_CI_DB allows" in caught.value.cause
    assert postgres.leftovers(postgres.labels[-1]) == []
    # What it allows works, through the same connection: the driver never saw the setting.
    minted = postgres.mint({"grant": [postgres.group], "connection_limit": 3}, connection=narrowed)
    postgres.use(minted)
    postgres.revoke(minted, connection=narrowed)
    assert postgres.leftovers(minted.reference) == []


# -- revoke ----------------------------------------------------------------------------------


def memberships(roles: Roles, oid: int) -> list[tuple[Any, ...]]:
    return roles.sql(
        "SELECT roleid, member FROM pg_auth_members WHERE roleid = %s OR member = %s", oid, oid
    )


def minted_with_memberships(
    postgres: PostgresHarness, roles: Roles, into: str
) -> tuple[Minted, int]:
    minted = postgres.mint()
    oid = roles.sql("SELECT oid FROM pg_roles WHERE rolname = %s", minted.reference)[0][0]
    # By hand, as the superuser: memberships the spec never asked for, both ways.
    roles.grant(into, minted.reference)
    roles.grant("pg_read_server_files", minted.reference)
    holder = roles.make("holder")
    roles.grant(minted.reference, holder)
    assert len(memberships(roles, oid)) >= 4
    return minted, oid


@pytest.mark.parametrize("directly", [True, False])
def test_revoke_succeeds_whatever_memberships_were_added(
    postgres: PostgresHarness, roles: Roles, directly: bool
) -> None:
    """The key made a member of the connection's own account, directly or through a role
    inside it (which made the revoke's grant to that account circular, failing for good), of a
    predefined role, and given a member."""
    into = postgres.admin if directly else roles.make("inside", member_of=postgres.admin)
    minted, oid = minted_with_memberships(postgres, roles, into)
    session = postgres.hold(minted)
    assert session is not None
    postgres.revoke(minted)
    assert postgres.leftovers(minted.reference) == []
    assert memberships(roles, oid) == []
    assert wait_until(lambda: not session()), "a session of the revoked key lives on"
    postgres.revoke(minted)  # gone: success


def test_revoke_through_a_superuser_connection_with_the_key_inside_it(
    postgres: PostgresHarness, roles: Roles
) -> None:
    """The audit's case: the key a member of `postgres`, revoked through `postgres`."""
    connection = superuser_connection()
    minted = postgres.provider.mint(MintRequest("K", {}, EXPIRES_AT, postgres.label(), connection))
    roles.grant("postgres", minted.reference)
    postgres.revoke(minted, connection=connection)
    assert postgres.leftovers(minted.reference) == []
