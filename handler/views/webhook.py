"""`POST /webhook`: verify, dedupe, route, queue — and answer at once (GitHub gives up after
10 seconds and never redelivers on its own; the worker does the slow part)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from flask import Blueprint, Request, Response, request

from handler.errors import error_response
from handler.events import Outcome, router
from handler.intake import apply_delivery
from handler.logs import event, logger, on_access_line
from handler.views import current_service
from handler.webhooks import HEADERS, BadDeliveryError, Delivery
from runkeys.errors import AuthError

blueprint = Blueprint("webhook", __name__)
log = logger("webhook")

_STATUS = {Outcome.QUEUED: 200, Outcome.PONG: 200, Outcome.DUPLICATE: 200, Outcome.IGNORED: 202}
# The headers a delivery is read from, by their WSGI environ keys: read there directly, each
# `request.headers` lookup goes through two context-local proxies and a case-folding search.
_ENVIRON_KEYS = tuple(
    (name, "CONTENT_TYPE" if name == "Content-Type" else "HTTP_" + name.upper().replace("-", "_"))
    for name in HEADERS
)


@blueprint.post("/webhook")
def webhook() -> Response:
    service = current_service()
    body = _body(request)  # the raw bytes the signature covers
    environ = request.environ
    headers = {name: environ[key] for name, key in _ENVIRON_KEYS if key in environ}
    try:
        delivery = Delivery.from_http(
            headers, body, secret=service.config.webhook_secret, reads=router.reads
        )
        decision = router.dispatch(delivery)
    except AuthError as exc:
        service.metrics.signature_failures.inc()
        event(
            log,
            "webhook refused",
            level=logging.WARNING,
            reason=exc.cause,
            delivery=request.headers.get("X-GitHub-Delivery", "")[:64],
            remote=request.remote_addr,
        )
        return error_response(401, "invalid_signature", exc.cause)
    except BadDeliveryError as exc:
        service.metrics.deliveries.labels(event="unknown", outcome="bad").inc()
        event(log, "webhook unreadable", level=logging.WARNING, reason=exc.cause)
        return error_response(exc.status, "bad_delivery", str(exc))
    outcome, queued = apply_delivery(service.ledger, delivery, decision, now=service.clock())
    service.metrics.deliveries.labels(event=delivery.event, outcome=outcome.value).inc()
    on_access_line(
        environ,
        event=delivery.name,
        installation=delivery.installation_id,
        outcome=outcome.value,
        queued=queued,
    )
    if queued:
        service.wake_worker()
    answer = msgspec.json.encode({"outcome": outcome.value, "queued": queued})
    return Response(answer, status=_STATUS[outcome], mimetype="application/json")


def _body(request: Request) -> bytes:
    """The body, as `request.get_data` reads it (413 past MAX_CONTENT_LENGTH), without its
    stream wrappers when the request says its length and is within the limit — as GitHub's
    deliveries do. gunicorn's and werkzeug's `wsgi.input` never read past that length."""
    environ: dict[str, Any] = request.environ
    length = request.content_length
    limit = request.max_content_length
    if (
        length is not None
        and (limit is None or length <= limit)
        and "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "")
    ):
        body: bytes = environ["wsgi.input"].read(length)
        return body
    return request.get_data(cache=False)
