"""`mysql`: a user per key on MariaDB or MySQL, with the grants the spec names.

Neither server can expire an account at a given time, so the service's sweeper keeps the TTL.
Revoke drops the user first, then ends its sessions: `DROP USER` alone leaves them running.
Grants refused, passwords kept out of logs, the admin account: docs/providers.md#mysql."""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

import pymysql
import pymysql.cursors

from runkeys.connections import Connection
from runkeys.errors import ParamError, ProviderError
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
    get_str,
    get_str_list,
    is_transient,
    new_password,
    runkeys_account,
    unparsed_url,
)

PARAMS = {"grant", "host", "connection_limit"}
GRANT_FIELDS = {"database", "table", "privileges"}
MAX_CONNECTION_LIMIT = 1000
CONNECT_TIMEOUT = 5  # seconds
QUERY_TIMEOUT = 30
# Privileges a test credential may get, on a table or on a whole database. Never `ALL`,
# `GRANT OPTION`, or the server-wide ones (FILE, PROCESS, SUPER, …): they are not grantable here.
TABLE_PRIVILEGES = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "INDEX", "ALTER"}
    | {"CREATE VIEW", "SHOW VIEW", "TRIGGER", "REFERENCES"}
)
DATABASE_PRIVILEGES = TABLE_PRIVILEGES | {
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "EXECUTE",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EVENT",
}
# The server's own schemas (accounts, every session's statements, metadata), compared without
# case as under lower_case_table_names; `_` is escaped in a grant, so no wildcard reaches them.
SYSTEM_SCHEMAS = frozenset({"mysql", "sys", "performance_schema", "information_schema"})
# A user's host part: a name, an address, `%`/`_` wildcards, an address/netmask.
_HOST = re.compile(r"^[A-Za-z0-9.%_:/-]{1,255}$")
# Connection URL settings passed to PyMySQL as they are (TLS, a socket).
_URL_FLAGS = {"ssl_verify_cert", "ssl_verify_identity"}
_URL_SETTINGS = {"ssl_ca", "ssl_cert", "ssl_key", "unix_socket"} | _URL_FLAGS
_SCHEMES = ("mysql", "mariadb")
# Client (CR_*) and server errors worth retrying: cannot connect, server gone, too many
# connections, lock wait timeout, deadlock, shutdown.
_TRANSIENT_CODES = {2002, 2003, 2006, 2013, 2055, 1040, 1226, 1053, 1205, 1213}
_UNKNOWN_THREAD = 1094


# Repeated on purpose: every provider declares the same Provider interface (name, params).
class MysqlProvider(Provider):
    name = "mysql"
    needs_connection = True

    def check_params(self, params: Mapping[str, Any]) -> None:
        check_known(params, PARAMS)
        host = get_str(params, "host", "%")
        if host is None or not _HOST.fullmatch(host):
            raise ParamError(
                "host",
                f"{host!r} is not a host pattern",
                fix="a host name, an address, '%' for any, or address/netmask",
            )
        if "connection_limit" in params:
            get_int(params, "connection_limit", 1, low=1, high=MAX_CONNECTION_LIMIT)
        grants = params.get("grant", [])
        if not isinstance(grants, list):
            raise ParamError("grant", "must be a list of {database, table, privileges}")
        for index, grant in enumerate(grants):
            _check_grant(f"grant[{index}]", grant)

    def check_allowed(self, params: Mapping[str, Any], connection: Connection) -> None:
        for index, grant in enumerate(params.get("grant", [])):
            databases = [str(grant["database"])]
            check_allow_list(f"grant[{index}].database", databases, connection, "databases")

    def mint(self, request: MintRequest) -> Minted:
        connection = connection_of(self.name, request)
        user = runkeys_account(self.name, "label", request.label)
        self.refuse_disallowed(request, connection)
        host = str(request.params.get("host", "%"))
        password = new_password()
        settings = _url_settings(connection)
        with self.scrubbed("mint", password, *connection.secrets()), _connect(connection) as conn:
            mariadb = "mariadb" in str(conn.get_server_info()).lower()  # type: ignore[no-untyped-call]
            with conn.cursor() as cursor:
                _create_user(cursor, user, host, password, request.params, mariadb=mariadb)
                try:
                    for grant in request.params.get("grant", []):
                        cursor.execute(_grant_statement(conn, grant, mariadb=mariadb), (user, host))
                except Exception:
                    # Account statements commit at once: undo the user by hand, nothing left.
                    cursor.execute("DROP USER IF EXISTS %s@%s", (user, host))
                    raise
            server_host, server_port = conn.host, conn.port
        parts = connection.parsed
        account = DatabaseAccount(
            user, password, server_host, server_port, urllib.parse.unquote(parts.path.lstrip("/"))
        )
        return account.minted(
            "mysql", reference=f"{user}@{host}", expires_at=request.expires_at, query=settings
        )

    def revoke(self, request: RevokeRequest) -> None:
        connection = connection_of(self.name, request)
        user, host = _parse_reference(request.reference, request.params)
        with (
            self.scrubbed("revoke", *connection.secrets()),
            _connect(connection) as conn,
            conn.cursor() as cursor,
        ):
            cursor.execute("DROP USER IF EXISTS %s@%s", (user, host))
            cursor.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
            for (thread_id,) in cursor.fetchall():
                try:
                    cursor.execute("KILL CONNECTION %s", (int(thread_id),))
                except pymysql.err.OperationalError as exc:
                    if exc.args[0] != _UNKNOWN_THREAD:  # it ended meanwhile
                        raise

    def reference_matches(self, reference: str, *, label: str, params: Mapping[str, Any]) -> bool:
        """`<label>@<host>`, the host as the parameters say (as minted)."""
        return reference == f"{label}@{params.get('host', '%')}"

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, pymysql.err.InterfaceError):
            return True  # the connection was closed under us
        if isinstance(exc, pymysql.err.MySQLError):
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            return code in _TRANSIENT_CODES
        return is_transient(exc)


def _check_grant(where: str, grant: Any) -> None:
    if not isinstance(grant, Mapping):
        raise ParamError(
            where, "must be a mapping", fix="e.g. {database: app, privileges: [SELECT]}"
        )
    for key in grant:
        if key not in GRANT_FIELDS:
            raise ParamError(
                f"{where}.{key}", "unknown field", fix="use database, table, privileges"
            )
    database = get_str(grant, "database")
    if database is None:
        raise ParamError(f"{where}.database", "missing", fix="name the database it is on")
    check_identifier(f"{where}.database", database)
    if database.lower() in SYSTEM_SCHEMAS:
        raise ParamError(
            f"{where}.database",
            f"{database!r} is the server's own schema: a test key gets no grant on it",
            fix="grant on the application's database",
        )
    table = get_str(grant, "table")
    if table is not None:
        check_identifier(f"{where}.table", table)
    try:
        privileges = [" ".join(p.upper().split()) for p in get_str_list(grant, "privileges")]
    except ParamError as exc:
        raise ParamError(f"{where}.privileges", exc.cause) from None
    allowed = DATABASE_PRIVILEGES if table is None else TABLE_PRIVILEGES
    if not privileges:
        raise ParamError(f"{where}.privileges", "is empty", fix="e.g. [SELECT]")
    for privilege in privileges:
        if privilege not in allowed:
            level = "a database" if table is None else "a table"
            raise ParamError(
                f"{where}.privileges",
                f"{privilege!r} cannot be granted on {level} by runkeys",
                fix="use some of: " + ", ".join(sorted(allowed)),
            )


def _connect(connection: Connection) -> pymysql.connections.Connection[Any]:
    parts = connection.parsed
    if parts.scheme not in _SCHEMES:
        raise ProviderError(
            "mysql",
            f"{connection.name}: a {parts.scheme or 'schemeless'} URL is not a MySQL URL",
            retryable=False,
            fix="use mysql://user:password@host:3306/database",
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # its message quotes what it took for the port: a password's start
        raise unparsed_url(
            "mysql", connection, "mysql://user:password@host:3306/database"
        ) from None
    options: dict[str, Any] = {
        "host": host or "127.0.0.1",
        "port": port or 3306,
        "user": urllib.parse.unquote(parts.username or ""),
        "password": connection.password or "",
        "database": urllib.parse.unquote(parts.path.lstrip("/")) or None,
        "connect_timeout": CONNECT_TIMEOUT,
        "read_timeout": QUERY_TIMEOUT,
        "write_timeout": QUERY_TIMEOUT,
        "autocommit": True,
    }
    for key, value in _url_settings(connection).items():
        options[key] = value.lower() in ("1", "true", "yes") if key in _URL_FLAGS else value
    return pymysql.connections.Connection(**options)


def _url_settings(connection: Connection) -> dict[str, str]:
    """The URL's query: TLS files and flags, or a socket; anything else is refused, not ignored."""
    settings = dict(urllib.parse.parse_qsl(connection.parsed.query))
    unknown = set(settings) - _URL_SETTINGS
    if unknown:
        raise ProviderError(
            "mysql",
            f"{connection.name}: unknown URL setting(s) {', '.join(sorted(unknown))}",
            retryable=False,
            fix="supported: " + ", ".join(sorted(_URL_SETTINGS)),
        )
    return settings


def _create_user(
    cursor: pymysql.cursors.Cursor,
    user: str,
    host: str,
    password: str,
    params: Mapping[str, Any],
    *,
    mariadb: bool,
) -> None:
    if mariadb:
        statement, secret = "CREATE USER %s@%s IDENTIFIED BY PASSWORD %s", _native_hash(password)
    else:
        statement, secret = "CREATE USER %s@%s IDENTIFIED BY %s", password
    if "connection_limit" in params:
        statement += f" WITH MAX_USER_CONNECTIONS {int(params['connection_limit'])}"
    cursor.execute(statement, (user, host, secret))


def _native_hash(password: str) -> str:
    """`mysql_native_password`'s stored form, `PASSWORD()` computed here: '*' + SHA1(SHA1(pw))."""
    inner = hashlib.sha1(password.encode()).digest()  # noqa: S324 (the server's format)
    return "*" + hashlib.sha1(inner).hexdigest().upper()  # noqa: S324


def _grant_statement(
    conn: pymysql.connections.Connection[Any], grant: Mapping[str, Any], *, mariadb: bool
) -> str:
    """`GRANT … ON db.* | db.table TO %s@%s`, names checked in `check_params` and quoted.

    In a database-level grant `_` and `%` are wildcards: `app_db.*` would also cover `appXdb`.
    `%` is refused by the name check; `_` is escaped, except on MySQL with `partial_revokes`,
    which takes names literally."""
    privileges = ", ".join(" ".join(p.upper().split()) for p in grant["privileges"])
    database = str(grant["database"])
    table = grant.get("table")
    if table is not None:
        target = f"{_quote(database)}.{_quote(str(table))}"
    else:
        escape = mariadb or not _partial_revokes(conn)
        target = _quote(database.replace("_", "\\_") if escape else database) + ".*"
    return f"GRANT {privileges} ON {target} TO %s@%s"


def _partial_revokes(conn: pymysql.connections.Connection[Any]) -> bool:
    with conn.cursor() as cursor:
        cursor.execute("SELECT @@GLOBAL.partial_revokes")
        row = cursor.fetchone()
    return bool(row and int(row[0]))


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def _parse_reference(reference: str, params: Mapping[str, Any]) -> tuple[str, str]:
    """`user@host` as `mint` made it; a bare user name takes its host from the parameters."""
    user, _, host = reference.partition("@")
    host = host or str(params.get("host", "%"))
    runkeys_account("mysql", "reference", user)
    if not _HOST.fullmatch(host):
        raise ProviderError("mysql", f"reference {reference!r} is not user@host", retryable=False)
    return user, host
