"""Webhook deliveries as GitHub makes them: the exact bytes, signed with the hook's secret
(`X-Hub-Signature-256: sha256=<HMAC-SHA256 hex>` and the legacy SHA-1 one), and the headers a
GitHub App's deliveries carry
(https://docs.github.com/webhooks/webhook-events-and-payloads#delivery-headers; real deliveries
in `tests/github/webhooks/deliveries/`)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from typing import Any

import requests

HOOKSHOT_VERSION = "c8f7262"  # GitHub-Hookshot/<sha> as seen on real deliveries
DEFAULT_HOOK_ID = 571592807


def sign(body: bytes, secret: str) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of the raw body with the webhook secret."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def sign_sha1(body: bytes, secret: str) -> str:
    """The legacy `X-Hub-Signature` (`sha1=<hex>`), still sent beside the SHA-256 one."""
    digest = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return f"sha1={digest}"


def encode(payload: Any) -> bytes:
    """The bytes GitHub sends for a payload: compact JSON (bytes are sent as they are)."""
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def new_delivery_id() -> str:
    # GitHub's delivery GUIDs are time-based UUIDs ("16056910-a6ff-11f0-880c-569b494ebd7a").
    return str(uuid.uuid1(node=secrets.randbits(48)))


def delivery_headers(
    event: str,
    body: bytes,
    *,
    secret: str | None,
    delivery_id: str,
    app_id: int | None = None,
    hook_id: int = DEFAULT_HOOK_ID,
) -> dict[str, str]:
    headers = {
        "User-Agent": f"GitHub-Hookshot/{HOOKSHOT_VERSION}",
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Hook-ID": str(hook_id),
    }
    if app_id is not None:
        headers["X-GitHub-Hook-Installation-Target-Type"] = "integration"
        headers["X-GitHub-Hook-Installation-Target-ID"] = str(app_id)
    if secret:  # GitHub signs only when the hook has a secret
        headers["X-Hub-Signature"] = sign_sha1(body, secret)
        headers["X-Hub-Signature-256"] = sign(body, secret)
    return headers


def deliver(
    url: str,
    event: str,
    payload: Any,
    *,
    secret: str | None,
    delivery_id: str | None = None,
    app_id: int | None = None,
    hook_id: int = DEFAULT_HOOK_ID,
    timeout: float = 10.0,
) -> requests.Response:
    """POST one delivery to `url`. Reuse `delivery_id` to redeliver (GitHub keeps the GUID)."""
    body = encode(payload)
    headers = delivery_headers(
        event,
        body,
        secret=secret,
        delivery_id=delivery_id or new_delivery_id(),
        app_id=app_id,
        hook_id=hook_id,
    )
    # GitHub gives up on a delivery after 10 s; so does this.
    return requests.post(url, data=body, headers=headers, timeout=timeout)
