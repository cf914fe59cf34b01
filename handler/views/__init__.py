"""The service's HTTP surface: `/webhook`, `/v1/leases…`, `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

from flask import current_app

from handler.service import Service


def current_service() -> Service:
    service: Service = current_app.extensions["runkeys"]
    return service
