"""`postgres`: a login role per key, with the server's own expiry (`VALID UNTIL`) and membership
in the roles the spec grants (checked in `postgres_grants`, from the spec and on the server).

The password reaches the server only as its verifier, hashed on the client as psql's
`\\password` does. Needs PostgreSQL 14 or newer. Revoke: docs/providers.md#postgres."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from runkeys.connections import Connection
from runkeys.errors import ParamError
from runkeys.providers.base import (
    # Repeated on purpose: each provider imports the base helpers it uses (a list, not logic).
    DatabaseAccount,
    Minted,
    MintRequest,
    Provider,
    RevokeRequest,
    check_allow_list,
    check_identifier,
    check_known,
    connection_of,
    get_int,
    get_str_list,
    is_transient,
    new_password,
    runkeys_account,
    unparsed_url,
    utc,
)
from runkeys.providers.postgres_grants import (
    GRANT_FIX,
    check_role_name,
    refuse_forbidden_grants,
    revoke_circular_memberships,
)

PARAMS = {"grant", "connection_limit"}
MAX_CONNECTION_LIMIT = 1000
CONNECT_TIMEOUT = 5  # seconds
TERMINATE_WAIT_MS = 5000
# Connection settings that are the admin account's own, not the minted role's.
_ACCOUNT_SETTINGS = {"user", "password", "passfile", "host", "hostaddr", "port", "dbname"}
# SQLSTATE classes worth retrying: connection exception, insufficient resources, operator
# intervention, transaction rollback, lock not available.
_TRANSIENT_STATES = ("08", "53", "57", "40", "55P03")
# What a server says in its FATAL answer to a new connection when it will accept one later.
_TRANSIENT_FATAL = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "too many clients",
    "too many connections",
    "remaining connection slots are reserved",
)


class PostgresProvider(Provider):
    name = "postgres"
    needs_connection = True

    def check_params(self, params: Mapping[str, Any]) -> None:
        check_known(params, PARAMS)
        roles = [check_identifier("grant", role) for role in get_str_list(params, "grant")]
        if len(set(roles)) != len(roles):
            raise ParamError("grant", "names a role twice", fix="list each role once")
        for role in roles:
            check_role_name(role)
        if "connection_limit" in params:
            get_int(params, "connection_limit", 1, low=1, high=MAX_CONNECTION_LIMIT)

    def check_allowed(self, params: Mapping[str, Any], connection: Connection) -> None:
        roles = get_str_list(params, "grant")
        account = _account_of(connection)
        if account is not None and account in roles:
            raise ParamError(
                "grant",
                f"{account!r} is the connection's own account: a key must not hold its powers",
                fix=GRANT_FIX,
            )
        check_allow_list("grant", roles, connection, "roles")

    def mint(self, request: MintRequest) -> Minted:
        connection = connection_of(self.name, request)
        role = runkeys_account(self.name, "label", request.label)
        password = new_password()
        self.refuse_disallowed(request, connection)
        with self.scrubbed("mint", password, *connection.secrets()), _connect(connection) as conn:
            verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), None)
            # One transaction: the grants are checked where they are made, and a refusal
            # leaves no role behind.
            with conn.transaction():
                refuse_forbidden_grants(conn, get_str_list(request.params, "grant"))
                conn.execute(_create_role(role, verifier.decode(), request))
            host, port, database = conn.info.host, conn.info.port, conn.info.dbname
        query = {k: v for k, v in conninfo_to_dict(connection.url).items() if v is not None}
        settings = {k: str(v) for k, v in query.items() if k not in _ACCOUNT_SETTINGS}
        account = DatabaseAccount(role, password, host, port, database)
        return account.minted(
            "postgresql", reference=role, expires_at=request.expires_at, query=settings
        )

    def revoke(self, request: RevokeRequest) -> None:
        connection = connection_of(self.name, request)
        role = runkeys_account(self.name, "reference", request.reference)
        with self.scrubbed("revoke", *connection.secrets()), _connect(connection) as conn:
            try:
                _drop_role(conn, role)
            except psycopg.errors.UndefinedObject:
                return  # gone meanwhile (a concurrent revoke): what revoke wanted

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, psycopg.Error):
            if exc.sqlstate is not None:
                return exc.sqlstate.startswith(_TRANSIENT_STATES)
            # No SQLSTATE: libpq failed before or while talking. A FATAL answer is a refusal,
            # unless the server is starting, stopping or full.
            text = str(exc)
            if "FATAL:" in text:
                return any(reason in text for reason in _TRANSIENT_FATAL)
            return isinstance(exc, psycopg.OperationalError)
        return is_transient(exc)


def _account_of(connection: Connection) -> str | None:
    """The user the connection logs in as, if its URL or DSN says (libpq's default, the OS
    user, is not guessed: the server's own check at mint covers it)."""
    try:
        user = conninfo_to_dict(connection.url).get("user")
    except psycopg.Error:
        return None  # a malformed DSN: mint says so
    return None if user is None else str(user)


def _connect(connection: Connection) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(
            connection.url,
            connect_timeout=CONNECT_TIMEOUT,
            autocommit=True,
            application_name="runkeys",
        )
    except psycopg.ProgrammingError:
        # A malformed DSN: libpq's message quotes the part it could not read, which may be
        # the password, so it is not passed on.
        raise unparsed_url(
            "postgres",
            connection,
            "postgresql://user:password@host:5432/db",
            what="URL or DSN",
            hint="; in a key=value DSN, quote a value with spaces in single quotes",
        ) from None


def _create_role(role: str, verifier: str, request: MintRequest) -> sql.Composed:
    params = request.params
    statement = sql.SQL("CREATE ROLE {role} LOGIN PASSWORD {pw} VALID UNTIL {until}")
    parts: list[sql.Composable] = [
        statement.format(
            role=sql.Identifier(role),
            pw=sql.Literal(verifier),
            until=sql.Literal(utc(request.expires_at).isoformat(timespec="seconds")),
        )
    ]
    if "connection_limit" in params:
        limit = int(params["connection_limit"])
        parts.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(limit)))
    grants = [sql.Identifier(r) for r in get_str_list(params, "grant")]
    if grants:
        parts.append(sql.SQL("IN ROLE {}").format(sql.SQL(", ").join(grants)))
    return sql.SQL(" ").join(parts)


def _drop_role(conn: psycopg.Connection[Any], role: str) -> None:
    name = sql.Identifier(role)
    found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if found is None:
        return
    # Locked first and committed, so no new session can start while the old ones are ended.
    conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(name))
    revoke_circular_memberships(conn, role)
    # Membership lets a non-superuser account end the role's sessions and take what it owns
    # (REASSIGN OWNED needs the privileges of both roles); it goes away with the role.
    conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(name))
    conn.execute(
        "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity"
        " WHERE usename = %s AND pid <> pg_backend_pid()",
        (TERMINATE_WAIT_MS, role),
    )
    with conn.transaction():
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(name))
        conn.execute(sql.SQL("DROP OWNED BY {}").format(name))
        conn.execute(sql.SQL("DROP ROLE {}").format(name))
