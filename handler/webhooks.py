"""Webhook deliveries without I/O, after gidgethub's `sansio`: check the signature over the raw
bytes, then (and only then) parse. Everything fails closed: no secret, no signature, a malformed
or wrong one, a content type other than JSON, a missing header — each raises.

Docs: https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from runkeys.errors import AuthError, RunkeysError
from runkeys.ids import MAX_ID, in_range

SIGNATURE_HEADER = "X-Hub-Signature-256"
_SIGNATURE = re.compile(r"^sha256=([0-9a-f]{64})$")
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_EVENT = re.compile(r"^[a-z_]{1,64}$")


class BadDeliveryError(RunkeysError):
    """Signed, but not a delivery this service can read (400/415)."""

    title = "Bad webhook delivery"

    def __init__(self, cause: str, *, status: int = 400, fix: str = "") -> None:
        super().__init__(cause, fix=fix)
        self.status = status


def sign(body: bytes, secret: str) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def validate_signature(body: bytes, *, signature: str | None, secret: str) -> None:
    """Raise `AuthError` unless `signature` is `sha256=<hex HMAC-SHA256(secret, body)>`."""
    if not secret:
        raise AuthError("No webhook secret is configured, so no delivery can be trusted")
    if not signature:
        raise AuthError(f"The delivery has no {SIGNATURE_HEADER} header")
    match = _SIGNATURE.fullmatch(signature.strip())
    if match is None:
        raise AuthError(f"The {SIGNATURE_HEADER} header is malformed")
    expected = hmac.digest(secret.encode(), body, hashlib.sha256)  # one-shot, in C
    if not hmac.compare_digest(expected, bytes.fromhex(match.group(1))):
        raise AuthError(f"The {SIGNATURE_HEADER} signature does not match the body")


@dataclass(frozen=True)
class Delivery:
    """One verified, parsed webhook delivery."""

    event: str
    delivery_id: str
    data: Mapping[str, Any] = field(repr=False)

    @property
    def action(self) -> str | None:
        action = self.data.get("action")
        return action if isinstance(action, str) else None

    @property
    def installation_id(self) -> int | None:
        installation = self.data.get("installation")
        if isinstance(installation, Mapping):
            return as_id(installation.get("id"))
        return None

    @property
    def name(self) -> str:
        """`workflow_run.completed`, or `ping` for an event without an action."""
        return f"{self.event}.{self.action}" if self.action else self.event

    @classmethod
    def from_http(
        cls,
        headers: Mapping[str, str],
        body: bytes,
        *,
        secret: str,
    ) -> Delivery:
        """Verify, then parse. `AuthError` (401) before anything is read from the body;
        `BadDeliveryError` for a signed delivery that is not JSON or lacks its headers."""
        named = {key.lower(): value for key, value in headers.items()}  # names are in any case
        validate_signature(body, signature=named.get(SIGNATURE_HEADER.lower()), secret=secret)
        content_type = (named.get("content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise BadDeliveryError(
                f"The delivery's content type is {content_type or 'missing'}",
                status=415,
                fix="set the webhook's content type to application/json in the App's settings",
            )
        event = named.get("x-github-event") or ""
        delivery_id = named.get("x-github-delivery") or ""
        if not _EVENT.fullmatch(event):
            raise BadDeliveryError("The X-GitHub-Event header is missing or malformed")
        if not _DELIVERY_ID.fullmatch(delivery_id):
            raise BadDeliveryError("The X-GitHub-Delivery header is missing or malformed")
        try:
            data = msgspec.json.decode(body)  # strict JSON, UTF-8 only: what GitHub sends
        except msgspec.DecodeError:
            raise BadDeliveryError("The delivery's body is not JSON") from None
        if not isinstance(data, dict):
            raise BadDeliveryError("The delivery's body is not a JSON object")
        return cls(event=event, delivery_id=delivery_id, data=data)


def as_id(value: Any, maximum: int = MAX_ID) -> int | None:
    """A GitHub numeric id from a payload, or None: booleans, strings, zero, negative numbers
    and numbers past what the ledger holds are not ids."""
    return in_range(value, maximum)
