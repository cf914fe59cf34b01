"""A worker's heartbeat: while it works through a claimed batch, a thread extends the claim's
deadline every third of its hold, so that a slow GitHub cannot make the claim lapse under a
live worker (and its leases be worked twice); a dead worker's heartbeat stops with it, and its
claim lapses within one hold."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import timedelta
from types import TracebackType

from handler.ledger.queue import extend_claim
from handler.logs import logger
from handler.service import Service

log = logger("worker")


class Heartbeat:
    def __init__(
        self, service: Service, token: str, lease_ids: Iterable[str], *, hold: timedelta
    ) -> None:
        self.service, self.token, self.hold = service, token, hold
        self._held = set(lease_ids)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="runkeys-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def holds(self, lease_id: str) -> bool:
        """Whether the claim on `lease_id` is still this worker's, as last extended."""
        with self._lock:
            return lease_id in self._held

    def beat(self) -> None:
        with self._lock:
            ids = sorted(self._held)
        with self.service.ledger.begin() as conn:
            held = extend_claim(conn, self.token, ids, now=self.service.clock(), hold=self.hold)
        with self._lock:
            self._held &= held  # finished leases leave it, and so do lost ones

    def _beat(self) -> None:
        interval = self.hold.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                self.beat()
            except Exception as exc:  # the ledger unreachable: try again at the next beat
                log.warning("claim not extended", exc_info=exc, extra={"fields": {}})
