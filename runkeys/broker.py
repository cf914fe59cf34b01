"""Broker mode's wire schema (`POST /v1/keys`), shared by the action and the service, and the
sealing of each key to the runner's one-request X25519 key (libsodium sealed box).

The body carries what the workflow asks for; who asks (repository, run, ref, pull request) and the
placeholders' values come from the verified OIDC token only.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec
from nacl.public import PrivateKey, PublicKey, SealedBox

from runkeys.leases import Lifetime, UtcTime

RequestId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
# base64 of 32 bytes: 44 characters with its one `=`.
PublicKeyB64 = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9+/]{43}=$")]
MAX_SPEC_BYTES = 64 * 1024


class Destination(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where the keys go: this job only, an environment (its name may hold the placeholders
    `{pr}`, `{run_id}`, `{run_attempt}`, `{run_number}`, filled from the token), or the
    repository's secrets."""

    kind: Literal["job", "environment", "repository"]
    environment: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None


class KeysRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`POST /v1/keys`. `request_id` is the action's, kept across its retries of one step, so a
    retried request never mints twice; `keys` is the step's `keys` input as written."""

    request_id: RequestId
    keys: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SPEC_BYTES)]
    destination: Destination
    public_key: PublicKeyB64


class SealedKey(msgspec.Struct, frozen=True, kw_only=True):
    """One minted key: what `keys-json` shows of it, and its value and parts sealed."""

    name: str
    provider: str
    lease_id: str
    lifetime: Lifetime
    expires_at: UtcTime
    scope: Literal["job", "environment", "repository"]
    environment: str | None
    # base64 of the sealed box of `Unsealed` as JSON; only the runner's private key opens it.
    sealed: str


class Unsealed(msgspec.Struct, frozen=True):
    value: str
    parts: Mapping[str, str] = {}


class KeysGranted(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to `POST /v1/keys`: every key of the spec, or an error and none."""

    request_id: str
    keys: list[SealedKey]
    created_environment: str | None = None


def new_key_pair() -> tuple[PrivateKey, str]:
    """A key pair for one request: the private key never leaves the runner's memory."""
    private = PrivateKey.generate()
    return private, base64.b64encode(bytes(private.public_key)).decode()


def seal(public_key: str, key: Unsealed) -> str:
    box = SealedBox(PublicKey(base64.b64decode(public_key, validate=True)))
    return base64.b64encode(box.encrypt(msgspec.json.encode(key))).decode()


def unseal(private_key: PrivateKey, sealed: str) -> Unsealed:
    """Raises `nacl.exceptions.CryptoError` when the box was not sealed to this key."""
    plain = SealedBox(private_key).decrypt(base64.b64decode(sealed, validate=True))
    return msgspec.json.decode(plain, type=Unsealed)


class KeysRetirement(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`POST /v1/keys/retire` (the action's post step; `handler.broker.retire`): the runner
    holds no provider connection in broker mode, so it cannot revoke anything itself and asks
    the service to. `scope` `job`: the request's `job` keys, as the job ends; `all`:
    every key of the request, after a step that failed once the service had answered (or may
    have). The service queues them for its worker (revoke, delete their secrets); the answer is
    `runkeys.leases.Retired`. Only the run attempt that made `request_id` (the token's
    repository, run and attempt) may retire its keys."""

    request_id: RequestId
    scope: Literal["job", "all"]


class KeysRefused(msgspec.Struct, frozen=True, kw_only=True):
    """An error answer of `POST /v1/keys`, in the API's one error shape (`handler/errors.py`:
    `error` and `message`), with the key it is about when there is one. Unknown fields are
    allowed: the service may add a rule or a fix."""

    error: str
    message: str
    key: str | None = None
