"""A key's label, `rk_<16 hex digits>_<key name>`: the name its credential carries at the backend
(a role, a user, a deploy key's title), made from the lease's id and key name.

The digits are a digest of the lease id, which a request body chooses, so a label cannot be aimed
at an account that exists. The service makes labels itself and the ledger keeps each once:
docs/service.md#security-model ("References are bound to their run")."""

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
