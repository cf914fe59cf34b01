"""JSON logs: one line per event, with named fields, never a key value or a token.

Fields are passed explicitly (`event(log, "lease revoked", lease=…)`); nothing logs a request
body or a header. Tracebacks pass through `scrub` to hide URL passwords a driver may print.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

from runkeys.scrub import scrub

LOGGER = "runkeys.service"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["traceback"] = scrub(self.formatException(record.exc_info))
        return json.dumps(line, default=str, sort_keys=False)


def configure(level: str = "INFO") -> None:
    """JSON to stderr for the root logger (gunicorn's error log included)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # PyGithub logs whole answers at DEBUG: a secret scanning alert's value, a new installation
    # token. Its logger never goes below INFO, whatever the service's level.
    logging.getLogger("github").setLevel(max(root.level, logging.INFO))


def logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER}.{name}" if name else LOGGER)


def event(log: logging.Logger, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    log.log(level, message, extra={"fields": fields})


# Where a view leaves fields for its request's access-log line (`handler.serve.JsonLogger`).
ACCESS_FIELDS = "runkeys.access_fields"


def on_access_line(environ: MutableMapping[str, Any], **fields: Any) -> None:
    """Fields for this request's line in the access log: what a request did, in the one line
    written for it anyway (a second line per webhook delivery cost as much as routing it)."""
    environ.setdefault(ACCESS_FIELDS, {}).update(fields)
