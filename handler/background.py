"""The worker and the sweeper on a loop: a daemon thread inside each service process (the
embedded default), or the foreground of `runkeys worker`.

The loop never dies of an error: it logs it and goes on after a pause. A webhook that queued
work wakes it at once instead of waiting out the poll interval.
"""

from __future__ import annotations

import threading
import time

from handler.logs import event, logger
from handler.service import Service
from handler.sweeper import Sweeper
from handler.worker import RevocationWorker

log = logger("background")
ERROR_PAUSE = 5.0


class WorkLoop:
    def __init__(self, service: Service, *, sweep: bool = True) -> None:
        self.service = service
        self.worker = RevocationWorker(service)
        self.sweeper = Sweeper(service, self.worker) if sweep else None
        self._wake = self.worker.wake  # a claim waiting for a budget wakes for new work too
        self._stop = threading.Event()
        self._next_sweep = 0.0
        service.wake_worker = self._wake.set

    def run(self) -> None:
        settings = self.service.config.worker
        event(log, "worker started", worker=self.worker.name, sweep=self.sweeper is not None)
        while not self._stop.is_set():
            pause = settings.poll_interval
            try:
                self._maybe_sweep()
                if self.worker.run_once() or self.worker.completions_pending():
                    pause = 0.0  # more may be due, or recorded completions left: go on at once
            except Exception as exc:
                log.error("worker loop failed", exc_info=exc, extra={"fields": {}})
                pause = ERROR_PAUSE
            if pause:
                self._wake.wait(pause)
                self._wake.clear()
        event(log, "worker stopped", worker=self.worker.name)

    def _maybe_sweep(self) -> None:
        if self.sweeper is None or time.monotonic() < self._next_sweep:
            return
        self._next_sweep = (
            time.monotonic() + self.service.config.worker.sweep_interval.total_seconds()
        )
        self.sweeper.sweep()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()


class BackgroundWorker:
    """The loop in a daemon thread (a killed process leaves claims that lapse on their own)."""

    def __init__(self, service: Service) -> None:
        self.loop = WorkLoop(service)
        self.thread = threading.Thread(target=self.loop.run, name="runkeys-worker", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.loop.stop()
        self.thread.join(timeout)
