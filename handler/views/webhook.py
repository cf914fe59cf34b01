"""`POST /webhook`: verify, dedupe, route, queue — and answer at once (GitHub gives up after
10 seconds and never redelivers on its own; the worker does the slow part)."""

from __future__ import annotations

import logging

import msgspec
from flask import Blueprint, Response, request

from handler.errors import error_response
from handler.events import Outcome, router
from handler.intake import apply_delivery
from handler.logs import event, logger, on_access_line
from handler.views import current_service
from handler.webhooks import BadDeliveryError, Delivery
from runkeys.errors import AuthError

blueprint = Blueprint("webhook", __name__)
log = logger("webhook")

_STATUS = {Outcome.QUEUED: 200, Outcome.PONG: 200, Outcome.DUPLICATE: 200, Outcome.IGNORED: 202}


@blueprint.post("/webhook")
def webhook() -> Response:
    service = current_service()
    body = request.get_data(cache=False)  # the raw bytes the signature covers; 413 past the limit
    try:
        delivery = Delivery.from_http(
            dict(request.headers), body, secret=service.config.webhook_secret
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
        request.environ,
        event=delivery.name,
        installation=delivery.installation_id,
        outcome=outcome.value,
        queued=queued,
    )
    if queued:
        service.wake_worker()
    answer = msgspec.json.encode({"outcome": outcome.value, "queued": queued})
    return Response(answer, status=_STATUS[outcome], mimetype="application/json")
