"""What a `postgres` key may be granted, and the memberships its revoke must undo first.

A key can become every role it is granted and every role those are members of, so the roles
docs/providers.md#postgres lists ("Never granted") are refused: by name from the spec
(`check_role_name`), and on the server in the transaction that creates the key
(`refuse_forbidden_grants`)."""

from __future__ import annotations

from typing import Any, NoReturn

import psycopg
from psycopg import sql

from runkeys.errors import ParamError, ProviderError

GRANT_FIX = (
    "grant a role made for test keys: NOLOGIN, without SUPERUSER, CREATEROLE, CREATEDB, "
    "REPLICATION or BYPASSRLS, and not a member of such a role, of a pg_… role or of the "
    "connection's own account"
)
DOCS = "docs/providers.md#postgres"
# PostgreSQL's own roles (the bootstrap superuser, the predefined pg_… roles) have OIDs below
# FirstNormalObjectId; every role created later has one at or above it.
FIRST_NORMAL_OID = 16384
# `PUBLIC` is every role and `NONE` is reserved: neither names a role a key could join.
_NOT_ROLES = frozenset({"public", "none"})
_ATTRIBUTES = ("SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS")

# Every role each granted role is a member of, itself included, through pg_auth_members (not
# pg_has_role, which counts a superuser as a member of every role).
_GRANTED_CLOSURE = """
WITH RECURSIVE closure(granted, oid) AS (
    SELECT rolname, oid FROM pg_roles WHERE rolname = ANY(%s)
  UNION
    SELECT c.granted, m.roleid FROM closure c JOIN pg_auth_members m ON m.member = c.oid
)
SELECT c.granted, r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
       r.rolbypassrls, r.oid < %s, r.rolname IN (session_user, current_user)
FROM closure c JOIN pg_roles r ON r.oid = c.oid
ORDER BY c.granted, r.rolname <> c.granted, r.rolname
"""

# The key's own memberships in a role that is, or is a member of, the connection's account:
# granting the key to that account (as revoke does) would be circular while they last.
_CIRCULAR_MEMBERSHIPS = """
WITH RECURSIVE inside(oid) AS (
    SELECT oid FROM pg_roles WHERE rolname = current_user
  UNION
    SELECT m.member FROM pg_auth_members m JOIN inside i ON m.roleid = i.oid
)
SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = %s)
  AND m.roleid IN (SELECT oid FROM inside)
ORDER BY r.rolname
"""


def check_role_name(role: str) -> None:
    """What can be refused from the name alone. Any case: a spec's author may expect SQL's
    folding of unquoted names, while runkeys quotes them."""
    lowered = role.lower()
    if lowered.startswith("pg_"):
        raise ParamError(
            "grant",
            f"{role!r}: pg_… names are PostgreSQL's predefined roles (the prefix is reserved "
            "for them), which read or run things on the server itself",
            fix=GRANT_FIX,
        )
    if lowered in _NOT_ROLES:
        raise ParamError("grant", f"{role!r} is not a role a key can be a member of", fix=GRANT_FIX)


def refuse_forbidden_grants(conn: psycopg.Connection[Any], roles: list[str]) -> None:
    """Raise a `ProviderError` naming the first granted role the key must not have, and why."""
    if not roles:
        return
    closure: dict[str, list[tuple[Any, ...]]] = {}
    for row in conn.execute(_GRANTED_CLOSURE, (roles, FIRST_NORMAL_OID)).fetchall():
        closure.setdefault(row[0], []).append(row[1:])
    for role in roles:
        if role not in closure:
            _refuse(role, "no role of that name exists on this server")
        for name, *flags, predefined, connection_role in closure[role]:
            why = _why_forbidden(flags, predefined=predefined, connection_role=connection_role)
            if why is None:
                continue
            if name == role:
                _refuse(role, f"it {why}")
            _refuse(role, f"it is a member of {name}, which {why}")


def _why_forbidden(flags: list[bool], *, predefined: bool, connection_role: bool) -> str | None:
    if connection_role:
        return "is the connection's own account"
    held = [attribute for attribute, flag in zip(_ATTRIBUTES, flags, strict=True) if flag]
    if held:
        return "has " + ", ".join(held)
    if predefined:
        return "is one of PostgreSQL's own roles"
    return None


def _refuse(role: str, why: str) -> NoReturn:
    raise ProviderError(
        "postgres",
        f"refusing to grant {role}: {why}",
        retryable=False,
        fix=GRANT_FIX,
        docs=DOCS,
    )


def revoke_circular_memberships(conn: psycopg.Connection[Any], role: str) -> None:
    """Take from `role` the memberships that make it a member of the connection's account.
    Runkeys never grants them; one given by hand would otherwise block its revoke for good.
    Every other membership goes with DROP ROLE."""
    for (granted,) in conn.execute(_CIRCULAR_MEMBERSHIPS, (role,)).fetchall():
        conn.execute(
            sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(granted), sql.Identifier(role))
        )
