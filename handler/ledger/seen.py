"""Ids the service has seen: webhook deliveries (GitHub repeats `X-GitHub-Delivery` when a
delivery is redelivered) and OIDC token ids (a token is accepted once). Both live in the ledger,
so the guard holds across replicas; both are pruned once they can no longer repeat."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete

from handler.ledger import tables
from handler.ledger.engine import insert_for

# GitHub lets a delivery be redelivered for 3 days (GHES: 7); keep ids a little longer:
# https://docs.github.com/webhooks/testing-and-troubleshooting-webhooks/redelivering-webhooks
DELIVERY_RETENTION = timedelta(days=8)
# A token past `exp` is refused anyway, but the verifier allows some leeway: keep its id longer.
TOKEN_ID_GRACE = timedelta(minutes=10)


def first_delivery(
    conn: Connection,
    delivery_id: str,
    *,
    event: str,
    action: str | None,
    outcome: str,
    now: datetime,
) -> bool:
    """Record a delivery; False if it was seen before (a redelivery)."""
    # RETURNING, not rowcount: psycopg reports no row count for ON CONFLICT DO NOTHING.
    inserted = (
        insert_for(conn, tables.deliveries)
        .values(
            delivery_id=delivery_id, event=event, action=action, outcome=outcome, received_at=now
        )
        .on_conflict_do_nothing()
        .returning(tables.deliveries.c.delivery_id)
    )
    return conn.execute(inserted).first() is not None


def first_token_use(conn: Connection, jti: str, expires_at: datetime) -> bool:
    """Record a token id; False if a token with this id was accepted before."""
    statement = insert_for(conn, tables.token_ids).values(jti=jti, expires_at=expires_at)
    inserted = statement.on_conflict_do_nothing().returning(tables.token_ids.c.jti)
    return conn.execute(inserted).first() is not None


def prune(conn: Connection, *, now: datetime) -> tuple[int, int]:
    """Forget deliveries and token ids that can no longer come back."""
    old_deliveries = conn.execute(
        delete(tables.deliveries).where(tables.deliveries.c.received_at < now - DELIVERY_RETENTION)
    ).rowcount
    old_tokens = conn.execute(
        delete(tables.token_ids).where(tables.token_ids.c.expires_at < now - TOKEN_ID_GRACE)
    ).rowcount
    return int(old_deliveries), int(old_tokens)
