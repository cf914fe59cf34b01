"""Who last wrote a secret: a lease must not delete a secret that a newer live lease wrote.

Two leases name the same secret when a re-run mints the same keys into the same environment, or a
scheduled workflow rotates a repository secret: the newer run's write replaced the older value
under the same name. Retiring the older lease revokes its credential, but deleting the secret by
name would take the newer lease's value away from the jobs that still read it. The action
registers a lease before it writes the secret, so the lease registered last is the last writer.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select

from handler.ledger import tables
from handler.ledger.records import LIVE_STATES, LeaseRecord

leases = tables.leases


def _same_target(lease: LeaseRecord) -> ColumnElement[bool]:
    """The same secret in GitHub: same repository (by id: a rename keeps it), same scope, same
    name. GitHub treats secret and environment names case-insensitively."""
    assert lease.secret is not None
    environment = lease.secret.environment
    return and_(
        leases.c.repository_id == lease.repository_id,
        func.upper(leases.c.secret_name) == lease.secret.name.upper(),
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
