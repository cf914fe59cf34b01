"""Who last wrote a secret: a lease must not delete a secret that a newer live lease wrote.

A re-run into the same environment, or the next rotation of a repository secret, writes the same
name; the action registers a lease before it writes, so the lease registered last is the last
writer, and retiring an older one revokes its credential but keeps the secret."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select

from handler.ledger import tables
from handler.ledger.records import LIVE_STATES, LeaseRecord

leases = tables.leases


def _same_target(lease: LeaseRecord) -> ColumnElement[bool]:
    assert lease.secret is not None
    return _target(lease.repository_id, lease.secret.environment, lease.secret.name)


def _target(repository_id: int, environment: str | None, name: str) -> ColumnElement[bool]:
    """The same secret in GitHub: same repository (by id: a rename keeps it), same scope, same
    name. GitHub treats secret and environment names case-insensitively."""
    return and_(
        leases.c.repository_id == repository_id,
        func.upper(leases.c.secret_name) == name.upper(),
        leases.c.secret_environment.is_(None)
        if environment is None
        else func.lower(leases.c.secret_environment) == environment.lower(),
    )


def newer_writer(conn: Connection, lease: LeaseRecord) -> str | None:
    """The id of a live lease that was registered after `lease` for the same secret (so wrote
    it since), or None when the secret is still `lease`'s own to delete."""
    if lease.secret is None:
        return None
    later = or_(
        leases.c.created_at > lease.created_at,
        and_(leases.c.created_at == lease.created_at, leases.c.issued_at > lease.issued_at),
    )
    query = (
        select(leases.c.id)
        .where(
            _same_target(lease),
            later,
            leases.c.id != lease.id,
            leases.c.state.in_([s.value for s in LIVE_STATES]),
        )
        .order_by(leases.c.created_at.desc(), leases.c.id)
        .limit(1)
    )
    found: str | None = conn.scalar(query)
    return found


def written_by_runkeys(
    conn: Connection, repository_id: int, environment: str | None, name: str
) -> bool:
    """Whether a live lease names this secret: runkeys wrote it and still answers for it (a
    rotation replaces it). A secret no live lease names was made by someone else."""
    query = (
        select(leases.c.id)
        .where(
            _target(repository_id, environment, name),
            leases.c.state.in_([s.value for s in LIVE_STATES]),
        )
        .limit(1)
    )
    return conn.scalar(query) is not None
