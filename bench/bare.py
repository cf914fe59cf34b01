"""The webhook benchmark's baseline: a bare Flask endpoint that answers `POST /webhook` with
200, under exactly the gunicorn settings `runkeys serve` uses (`handler.serve.default_options`:
worker class, workers, threads, timeouts, keep-alive, the JSON access log). The difference
between the two is what runkeys does with a delivery.

    python -m bench.bare --bind 127.0.0.1:8081 --workers 2 --threads 4
"""

from __future__ import annotations

import argparse
from typing import Any

from flask import Flask, Response, jsonify

from handler import logs
from handler.serve import ServiceApplication, default_options


def create_bare_app() -> Flask:
    app = Flask("bare")

    @app.post("/webhook")
    def webhook() -> Response:
        return jsonify({"outcome": "queued", "queued": 0})  # the size of runkeys' answer

    @app.get("/readyz")
    def ready() -> Response:
        return jsonify({"status": "ready"})

    return app


class BareApplication(ServiceApplication):
    def load(self) -> Any:
        return create_bare_app()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare")
    parser.add_argument("--bind", default="127.0.0.1:8081")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    logs.configure("INFO")  # as `runkeys serve` does, so both write the same access log
    options = default_options(
        bind=args.bind, workers=args.workers, threads=args.threads, timeout=30, log_level="INFO"
    )
    BareApplication(options).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
