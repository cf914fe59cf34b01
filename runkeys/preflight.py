"""The expiry preflight's wire schema (`POST /v1/leases/check`), one for the `check` sub-action
that asks and the service that answers.

The step names keys and sends the SHA-256 fingerprint of the value it holds for each, never the
value. The service answers from its ledger, for the token's repository only; the step decides
what is too close to expiry (`min-remaining` is the job's business, not the service's)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec

from runkeys.leases import UtcTime

MAX_KEYS = 100  # a spec has at most 100 keys
# GitHub's secret-name characters; the length is the ledger's key_name column.
KeyName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=255)]
Fingerprint = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class KeyStatus(StrEnum):
    LIVE = "live"  # the value is a live lease's, before its expiry
    RETIRED = "retired"  # the value's lease was retired: `cause`, `reason`, `retired_at` say why
    EXPIRED = "expired"  # the value's lease is past its TTL (retired by the sweeper or not yet)
    UNKNOWN = "unknown"  # no lease of that name for this run, this job's environment or value
    STALE = "stale"  # the value is not the live lease's: an older one's, or no lease's at all


class Cause(StrEnum):
    """Why the ledger retired a lease, as far as the service can tell from its own reasons."""

    RUN_COMPLETED = "run_completed"
    PULL_REQUEST_CLOSED = "pull_request_closed"
    TTL = "ttl"
    POST_STEP = "post_step"
    OPERATOR = "operator"
    UNINSTALLED = "uninstalled"
    LEAKED = "leaked"
    OTHER = "other"  # the ledger's `reason` says it in words


class KeyQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: KeyName
    fingerprint: Fingerprint


class CheckRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    keys: Annotated[list[KeyQuery], msgspec.Meta(min_length=1, max_length=MAX_KEYS)]


class KeyAnswer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One key. `run_id`/`run_attempt`/`expires_at` are of the lease the value belongs to, or
    for a value that is no lease's, of the lease the job should have had."""

    name: str
    status: KeyStatus
    expires_at: UtcTime | None = None
    remaining_seconds: int | None = None  # live keys: by the service's clock
    retired_at: UtcTime | None = None
    cause: Cause | None = None
    reason: str | None = None  # the ledger's own words; never a value
    run_id: int | None = None
    run_attempt: int | None = None
    # Stale: whether the value is any lease's of this key in this repository.
    value_known: bool | None = None


class CheckAnswer(msgspec.Struct, frozen=True):
    now: UtcTime  # the service's clock
    keys: list[KeyAnswer]
