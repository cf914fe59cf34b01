"""The ledger's tables, one schema for SQLite and PostgreSQL (SQLAlchemy Core).

No column holds a key's value: a lease keeps the provider's reference (a role name, a key id)
and a SHA-256 fingerprint, nothing a credential could be rebuilt from. Times are UTC, stored
without a zone (the same on both engines) and read back as aware datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

metadata = MetaData()

# Row ids of the append-only log: BIGINT on PostgreSQL, SQLite's own INTEGER PRIMARY KEY rowid.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in Python, naive UTC in the database."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the ledger stores aware datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


# Repeated on purpose: one Column line per column; a schema is declared, not generated.
leases = Table(
    "leases",
    metadata,
    Column("id", String(64), primary_key=True),  # made by the action: a retry is idempotent
    # Where the key belongs, from the verified OIDC token (never from a request body).
    Column("installation_id", BigInteger, nullable=True),
    Column("repository_id", BigInteger, nullable=False),
    Column("repository", String(200), nullable=False),
    Column("owner_id", BigInteger, nullable=False),
    Column("run_id", BigInteger, nullable=False),
    Column("run_attempt", Integer, nullable=False),
    Column("pr_number", Integer, nullable=True),
    Column("job_environment", String(255), nullable=True),
    Column("ref", String(255), nullable=False),
    Column("sha", String(64), nullable=False),
    Column("event_name", String(64), nullable=False),
    # What the key is and where it went.
    Column("key_name", String(255), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("connection", String(64), nullable=True),
    # SHA-256 of the connection's target (scheme, host, port, database), as the action minted
    # on it: the service revokes only through a connection that reaches the same (version 4).
    Column("connection_target", String(64), nullable=True),
    Column("reference", String(500), nullable=False),
    # `runkeys.labels.label(id, key_name)`, made by the service: the name the reference must
    # be for. Unique: no second lease may claim a credential already leased (version 2).
    Column("label", String(32), nullable=True),
    Column("params", JSON, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("secret_repository", String(200), nullable=True),
    Column("secret_name", String(255), nullable=True),
    Column("secret_environment", String(255), nullable=True),
    Column("lifetime", String(8), nullable=False),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    # Retirement: state machine active → revoking → revoked | failed.
    Column("state", String(16), nullable=False),
    Column("retire_requested_at", UTCDateTime, nullable=True),
    Column("retire_reason", String(300), nullable=True),
    Column("provider_only", Boolean, nullable=False, default=False),  # the App lost access
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("last_error", String(300), nullable=True),
    Column("claim_token", String(32), nullable=True),
    Column("claimed_until", UTCDateTime, nullable=True),
    Column("retired_at", UTCDateTime, nullable=True),
    Column("reconciled_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
Index("ix_leases_due", leases.c.state, leases.c.next_attempt_at)
Index("ix_leases_run", leases.c.repository_id, leases.c.run_id, leases.c.run_attempt)
Index("ix_leases_pr", leases.c.repository_id, leases.c.pr_number)
Index("ix_leases_expiry", leases.c.state, leases.c.expires_at)
Index("ix_leases_environment", leases.c.repository_id, leases.c.secret_environment)
Index("ux_leases_label", leases.c.label, unique=True)

# Append-only: who did what to a lease, and why. Never updated, never deleted.
lease_events = Table(
    "lease_events",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("lease_id", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(64), nullable=False),  # webhook, sweeper, operator, post-step, worker…
    Column("action", String(32), nullable=False),  # registered, queued, revoked, attempt_failed…
    Column("detail", Text, nullable=False),  # e.g. "webhook workflow_run.completed delivery …"
)
Index("ix_lease_events_lease", lease_events.c.lease_id, lease_events.c.id)

# Run completions received and not yet applied: one row per delivery however many leases the
# run holds, so the webhook answers fast; the worker applies it (`handler.ledger.completions`).
run_completions = Table(
    "run_completions",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("repository_id", BigInteger, nullable=False),
    Column("run_id", BigInteger, nullable=False),
    Column("up_to_attempt", Integer, nullable=False),
    Column("installation_id", BigInteger, nullable=True),  # from the signed delivery
    Column("reason", String(300), nullable=False),  # "webhook workflow_run.completed delivery …"
    Column("received_at", UTCDateTime, nullable=False),
)

# Environments leases named: deleted once no live lease uses it, if a lease said runkeys created
# it and GitHub agrees (`handler.ownership`); otherwise `kept`, and `note` says why.
environments = Table(
    "environments",
    metadata,
    Column("repository_id", BigInteger, primary_key=True),
    Column("name_key", String(255), primary_key=True),  # lower-cased: GitHub ignores case
    Column("name", String(255), nullable=False),
    Column("repository", String(200), nullable=False),
    Column("state", String(16), nullable=False),  # present, deleted, unreachable, kept
    Column("created_at", UTCDateTime, nullable=False),
    Column("deleted_at", UTCDateTime, nullable=True),
    # The service's clock at the first registration that named it, since runkeys last deleted
    # it; and whether a lease said the action created it (a claim, never enough alone).
    Column("named_at", UTCDateTime, nullable=True),
    Column("claimed", Boolean, nullable=False, default=False),
    Column("note", String(300), nullable=True),
)

# Webhook deliveries seen (X-GitHub-Delivery repeats on redelivery), kept for a while.
deliveries = Table(
    "deliveries",
    metadata,
    Column("delivery_id", String(64), primary_key=True),
    Column("event", String(64), nullable=False),
    Column("action", String(64), nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("received_at", UTCDateTime, nullable=False, index=True),
)

# OIDC token ids seen, until the token expires: a token is accepted once, on any replica.
token_ids = Table(
    "token_ids",
    metadata,
    Column("jti", String(200), primary_key=True),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

# Broker requests (`POST /v1/keys`) by the token's repository and the action's request id: a
# retry never mints twice. Lease ids only, never a value (version 5).
broker_requests = Table(
    "broker_requests",
    metadata,
    Column("repository_id", BigInteger, primary_key=True),
    Column("request_id", String(64), primary_key=True),
    Column("repository", String(200), nullable=False),
    Column("run_id", BigInteger, nullable=False),
    Column("run_attempt", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # minting, granted
    Column("lease_ids", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
Index("ix_broker_requests_created", broker_requests.c.created_at)  # pruning (version 8)

# Append-only: every policy decision of the broker, with who asked and which keys (names,
# providers, connections, the deciding rule and reason), never a value (version 5).
policy_decisions = Table(
    "policy_decisions",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("outcome", String(8), nullable=False),  # allow, deny
    Column("rules", JSON, nullable=False),
    Column("repository", String(200), nullable=False),
    Column("repository_id", BigInteger, nullable=False),
    Column("ref", String(255), nullable=False),
    Column("event_name", String(64), nullable=False),
    Column("workflow", String(500), nullable=True),
    Column("job_workflow_ref", String(500), nullable=True),
    Column("run_id", BigInteger, nullable=False),
    Column("run_attempt", Integer, nullable=False),
    Column("actor", String(255), nullable=True),
    Column("destination", String(300), nullable=False),
    Column("request_id", String(64), nullable=True),
    Column("keys", JSON, nullable=False),
)
Index("ix_policy_decisions_repository", policy_decisions.c.repository_id, policy_decisions.c.id)

# Secret scanning alerts the webhook recorded (repository and installation from the signed
# delivery), worked by the worker: fetched, matched to leases by fingerprint, resolved. Never
# the alert's secret (version 6; `handler.ledger.alerts`).
secret_alerts = Table(
    "secret_alerts",
    metadata,
    Column("repository_id", BigInteger, primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("repository", String(200), nullable=False),
    Column("installation_id", BigInteger, nullable=True),
    Column("state", String(16), nullable=False),  # pending, matched, done, failed
    # What came of it: retired, no_match, retired_already (a lease already retired).
    Column("outcome", String(32), nullable=True),
    Column("lease_ids", JSON, nullable=False),  # the leases it retires (matched)
    Column("html_url", String(500), nullable=True),  # from GitHub's answer
    Column("reason", String(300), nullable=False),  # "webhook secret_scanning_alert.created …"
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", String(300), nullable=True),
    Column("claim_token", String(32), nullable=True),
    Column("claimed_until", UTCDateTime, nullable=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
Index("ix_secret_alerts_due", secret_alerts.c.state, secret_alerts.c.next_attempt_at)

# The fingerprints of a lease's secret parts (a database key's PASSWORD), besides its value's:
# what the log scan looks for (version 7). Never a value.
lease_parts = Table(
    "lease_parts",
    metadata,
    Column("lease_id", String(64), primary_key=True),
    Column("name", String(32), primary_key=True),  # the part: PASSWORD, USER…
    Column("fingerprint", String(64), nullable=False),
)

# Log scans to do: one per run attempt that completed with leases, claimed by a worker, retried
# with backoff while GitHub has no logs yet (`handler.logscan`, version 7).
log_scans = Table(
    "log_scans",
    metadata,
    Column("repository_id", BigInteger, primary_key=True),
    Column("run_id", BigInteger, primary_key=True),
    Column("run_attempt", Integer, primary_key=True),
    Column("installation_id", BigInteger, nullable=True),  # from the signed delivery
    Column("state", String(16), nullable=False),  # queued, done, failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("claimed_until", UTCDateTime, nullable=True),
    Column("findings", Integer, nullable=False, default=0),
    Column("note", String(300), nullable=True),  # how it went: bytes scanned, truncated, why not
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
Index("ix_log_scans_due", log_scans.c.state, log_scans.c.next_attempt_at)

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
)
