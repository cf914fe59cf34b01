"""The Flask application factory (the Flask tutorial's `create_app`)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from handler.background import BackgroundWorker
from handler.config import ServiceConfig
from handler.errors import error_response
from handler.logs import logger
from handler.service import Clock, Service, utc_now
from handler.views import (  # noqa: F401 (keys, check: their routes join leases' blueprint on import)
    check,
    keys,
    leases,
    ops,
    webhook,
)
from runkeys import __version__, versions

log = logger("app")


def create_app(
    config: ServiceConfig | Mapping[str, str] | None = None, *, clock: Clock = utc_now
) -> Flask:
    """The service. `config`: settings, or an environment to read them from (default: this
    process's). Raises `ConfigError` naming the first missing or malformed setting. Starts the
    embedded revocation worker unless `RUNKEYS_WORKER=external`."""
    if config is None:
        config = ServiceConfig.from_env(os.environ)
    elif not isinstance(config, ServiceConfig):
        config = ServiceConfig.from_env(config)
    service = Service(config, clock=clock)
    app = Flask("handler")
    app.config["MAX_CONTENT_LENGTH"] = config.webhook_max_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["runkeys"] = service

    for blueprint in (webhook.blueprint, leases.blueprint, ops.blueprint):
        app.register_blueprint(blueprint)
    app.after_request(_version_header)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    if config.worker.embedded:
        background = BackgroundWorker(service)
        app.extensions["runkeys.worker"] = background
        background.start()
    return app


def _version_header(response: Response) -> Response:
    response.headers[versions.HEADER] = __version__
    return response


def _http_error(exc: HTTPException) -> Response:
    code = (exc.name or "error").lower().replace(" ", "_")
    return error_response(exc.code or 500, code, exc.description or exc.name or "error")


def _unexpected(exc: Exception) -> Response:
    log.error("unexpected error", exc_info=exc, extra={"fields": {"error": type(exc).__name__}})
    return error_response(500, "internal_error", "The service failed; see its logs")
