"""PostgreSQL for the demo: is a server there that can make roles, can a minted role log in, and
dropping whatever a cut-short demo left behind."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg

from runkeys.connections import Connection
from runkeys.providers.base import RevokeRequest
from runkeys.providers.postgres import PostgresProvider
from runkeys.scrub import scrub, short

CONNECTION = "DEMO_DB"  # RUNKEYS_CONNECTION_DEMO_DB; `connection: demo_db` in the spec


@dataclass(frozen=True)
class Postgres:
    """A server the demo may mint roles on, through an account that can create them."""

    url: str = field(repr=False)

    @property
    def where(self) -> str:
        return where(self.url)

    @property
    def connection(self) -> Connection:
        return Connection(CONNECTION, self.url)


def where(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


def probe(url: str) -> tuple[Postgres | None, str]:
    """The server at `url` if its account can create roles; else None and why not."""
    password = urllib.parse.unquote(urllib.parse.urlsplit(url).password or "")
    try:
        with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
            row = conn.execute(
                "SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, short(scrub(reason, [password] if password else []), 160)
    if not row or not row[0]:
        return None, "its account may not create roles (it needs CREATEROLE)"
    return Postgres(url), ""


def logs_in(dsn: str) -> bool:
    """Whether `dsn` opens a session (and the session is the role it names)."""
    user = urllib.parse.unquote(urllib.parse.urlsplit(dsn).username or "")
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            row = conn.execute("SELECT current_user").fetchone()
    except psycopg.OperationalError:
        return False
    return row is not None and row[0] == user


def roles_present(server: Postgres, roles: Iterable[str]) -> list[str]:
    names = list(roles)
    if not names:
        return []
    with psycopg.connect(server.url, connect_timeout=3, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (names,)
        ).fetchall()
    return [str(name) for (name,) in rows]


def drop_roles(server: Postgres, roles: Iterable[str]) -> None:
    """Revoke as the provider does (idempotent: a role already gone is fine)."""
    provider = PostgresProvider()
    for role in roles:
        provider.revoke(RevokeRequest(reference=role, params={}, connection=server.connection))
