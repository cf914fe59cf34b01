"""A key's label: the name its credential carries at the backend (a PostgreSQL role, a MariaDB
or Redis user, a deploy key's title), made from the lease's id and key name.

The action mints under it; the service makes it again from the lease it is asked to register
and accepts only a provider reference that names it, never a name taken from the request body.
The ledger keeps each label once, so a lease can only ever get retired what its own run minted.

    rk_<16 hex digits>_<key name, lower-cased>        at most 32 characters, [a-z0-9_]

The 16 hex digits are the first 64 bits of the SHA-256 of the lease id, not the id itself: the
service takes lease ids from the request body, so an attacker picks them. Built from the id's
own characters, a label could be aimed at any `rk_…` account that exists but is not (yet) in
the ledger: a run that does not use the service, or one between its mint and its registration.
Through the hash, aiming at one name costs a 2^64 search. Two honest leases share a label with
a chance of about n²/2^65 (1 in 37 million at a million leases), and the ledger refuses the
second one anyway. 32 characters: MySQL's limit for user names (PostgreSQL's is 63).
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "rk_"
MAX_LENGTH = 32
DIGEST_CHARS = 16  # 64 bits
_NOT_NAME = re.compile(r"[^a-z0-9_]")
# What a runkeys account name looks like, of this version or an earlier one (`rk_<8 chars>_…`).
_RUNKEYS_NAME = re.compile(rf"^{PREFIX}[a-z0-9_]{{1,{MAX_LENGTH - len(PREFIX)}}}$")


def label(lease_id: str, key_name: str) -> str:
    """The label of the lease `lease_id` of key `key_name`: unique per lease, `[a-z0-9_]`, at
    most 32 characters."""
    digest = hashlib.sha256(lease_id.encode()).hexdigest()[:DIGEST_CHARS]
    name = _NOT_NAME.sub("_", key_name.lower())
    return f"{PREFIX}{digest}_{name}"[:MAX_LENGTH].rstrip("_")


def is_runkeys_name(name: str) -> bool:
    """Whether `name` is shaped like an account runkeys made (`rk_…`). Providers revoke nothing
    else, whatever a ledger row says: `postgres` or `app_owner` are never dropped."""
    return _RUNKEYS_NAME.fullmatch(name) is not None
