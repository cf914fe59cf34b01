"""The GitHub App webhook service: keeps the lease ledger and retires keys on time. Thin: the
logic of a key lives in `runkeys`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from handler.config import ServiceConfig


def create_app(config: ServiceConfig | Mapping[str, str] | None = None) -> Flask:
    """See `handler.app.create_app`; imported late so `runkeys serve` can prepare the process
    (metrics directory) before Flask and prometheus_client load."""
    from handler.app import create_app as make  # noqa: PLC0415 (see above)

    return make(config)


__all__ = ["create_app"]
