"""The webhook benchmark's baseline: a bare Flask endpoint that answers `POST /webhook` with 200,
under exactly the gunicorn settings `runkeys serve` uses (`handler.serve.default_options`).

With `--ledger URL` it also does the ledger read and completion write a run with leases needs,
with runkeys' own ledger code, for the run named in `X-Bench-Run`: the floor under a delivery.

    python -m bench.bare --bind 127.0.0.1:8081 --workers 2 --threads 4 [--ledger URL]"""

from __future__ import annotations

import argparse
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, request

from handler import logs
from handler.ledger import Ledger
from handler.ledger.completions import record_completion
from handler.ledger.queue import RunLeases, count_to_queue
from handler.serve import ServiceApplication, default_options


@dataclass(frozen=True)
class Writes:
    """The ledger the endpoint reads and writes, and the repository and installation of the
    runs the load generator names."""

    ledger_url: str
    repository_id: int
    installation_id: int


def create_bare_app(writes: Writes | None = None) -> Flask:
    app = Flask("bare")
    ledger = Ledger.open(writes.ledger_url, migrate_schema=False) if writes else None

    @app.post("/webhook")
    def webhook() -> Response:
        queued = 0
        if writes is not None and ledger is not None:
            run = RunLeases(
                writes.repository_id,
                int(request.headers["X-Bench-Run"]),
                1,
                writes.installation_id,
            )
            queued = _record(ledger, run)
        return jsonify({"outcome": "queued", "queued": queued})  # the size of runkeys' answer

    @app.get("/readyz")
    def ready() -> Response:
        return jsonify({"status": "ready"})

    return app


def _record(ledger: Ledger, run: RunLeases) -> int:
    """What `handler.intake` does for a run's completion, without the delivery: count the
    run's active leases and, if there are any, commit the completion row."""
    with ledger.begin() as conn:
        active = count_to_queue(conn, run)
        if active:
            reason = f"webhook workflow_run.completed delivery {uuid.uuid4()}"
            record_completion(conn, run, reason=reason, now=datetime.now(UTC))
    return active


class BareApplication(ServiceApplication):
    def __init__(self, options: dict[str, Any], writes: Writes | None = None) -> None:
        self.writes = writes
        super().__init__(options)

    def load(self) -> Any:
        return create_bare_app(self.writes)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare")
    parser.add_argument("--bind", default="127.0.0.1:8081")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--ledger", help="also read and write this ledger, as a delivery would")
    parser.add_argument("--repository-id", type=int, default=0, help="of the runs (--ledger)")
    parser.add_argument("--installation-id", type=int, default=0, help="of the runs (--ledger)")
    args = parser.parse_args()
    logs.configure("INFO")  # as `runkeys serve` does, so both write the same access log
    options = default_options(
        bind=args.bind, workers=args.workers, threads=args.threads, timeout=30, log_level="INFO"
    )
    writes = Writes(args.ledger, args.repository_id, args.installation_id) if args.ledger else None
    BareApplication(options, writes).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
