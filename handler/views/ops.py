"""Health, readiness and metrics for whoever runs the service."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify
from sqlalchemy.exc import SQLAlchemyError

from handler.errors import error_response
from handler.metrics import CONTENT_TYPE
from handler.views import current_service
from runkeys import __version__

blueprint = Blueprint("ops", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    """The process answers: nothing else is checked (liveness)."""
    return jsonify({"status": "ok", "version": __version__})


@blueprint.get("/readyz")
def readyz() -> Response:
    """The ledger is reachable and migrated (readiness)."""
    try:
        ready = current_service().ledger.ready()
    except SQLAlchemyError as exc:
        return error_response(503, "not_ready", f"The ledger is unreachable ({type(exc).__name__})")
    if not ready:
        return error_response(503, "not_ready", "The ledger's schema is older than this service")
    return jsonify({"status": "ready"})


@blueprint.get("/metrics")
def metrics() -> Response:
    service = current_service()
    if service.config.metrics_bind is not None:
        abort(404)  # served on RUNKEYS_METRICS_BIND only, as if there were no such page here
    return Response(
        service.metrics.exposition(service.ledger, service.clock), content_type=CONTENT_TYPE
    )
