"""Measurements on one ledger, with the service's own code: the webhook's transaction, the
sweeper, the worker's idle claim, the `/metrics` gauges, and their query plans."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import update

from bench.plans import Plans, explain
from bench.rows import lease_row, load
from handler.config import ServiceConfig
from handler.events import router
from handler.intake import apply_delivery
from handler.ledger import Ledger, tables
from handler.ledger.completions import apply_completions
from handler.ledger.queue import backlog, claim_due, count_by_state
from handler.service import Service
from handler.sweeper import Sweeper
from handler.webhooks import Delivery
from runkeys.leases import LeaseState

PROBE_REPOSITORY = 1_000_000  # one of bench.history's repositories
PROBE_INSTALLATION = 7_000_000


@dataclass
class Checkpoint:
    engine: str
    size: int
    load_seconds: float
    webhook_leases: list[float] = field(default_factory=list)
    webhook_none: list[float] = field(default_factory=list)
    sweeps: list[float] = field(default_factory=list)
    poll: list[float] = field(default_factory=list)
    gauges: list[float] = field(default_factory=list)


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


class Probe:
    """Measurements on one ledger. Leases it queues are then marked revoked, as the worker would
    have done, so the next size starts from the same kind of ledger."""

    def __init__(self, ledger: Ledger, now: datetime) -> None:
        self.ledger = ledger
        self.now = now
        # The service's clock stands still: the history was made as of `now`.
        self.service = Service(ServiceConfig.for_ledger({}), ledger=ledger, clock=lambda: now)
        self.next_run = 9_000_000_000

    def _runs(self, runs: int, leases: int, *, expired: bool = False) -> list[int]:
        ids = list(range(self.next_run, self.next_run + runs))
        self.next_run += runs
        issued = self.now - timedelta(hours=2) if expired else self.now - timedelta(minutes=5)
        ttl = timedelta(minutes=90) if expired else timedelta(hours=1)
        load(
            self.ledger,
            (
                lease_row(
                    repository_id=PROBE_REPOSITORY,
                    repository="org-0/repo-0",
                    installation_id=PROBE_INSTALLATION,
                    run_id=run_id,
                    issued_at=issued,
                    ttl=ttl,
                    key_name=f"KEY_{k}",
                    environment=f"ci-run-{run_id}",
                )
                for run_id in ids
                for k in range(leases)
            ),
        )
        return ids

    def deliver(self, run_id: int) -> float:
        data = {
            "action": "completed",
            "workflow_run": {"id": run_id, "run_attempt": 1},
            "repository": {"id": PROBE_REPOSITORY},
            "installation": {"id": PROBE_INSTALLATION},
        }
        delivery = Delivery(event="workflow_run", delivery_id=uuid.uuid4().hex, data=data)
        decision = router.dispatch(delivery)

        def find_and_queue() -> None:
            """The intake records a run with leases; the worker's first step queues them."""
            apply_delivery(self.ledger, delivery, decision, now=self.now)
            with self.ledger.begin() as conn:
                apply_completions(conn)

        return timed(find_and_queue)

    def retire_queued(self) -> None:
        leases = tables.leases
        with self.ledger.begin() as conn:
            conn.execute(
                update(leases)
                .where(
                    leases.c.state == LeaseState.REVOKING.value,
                    leases.c.next_attempt_at <= self.now + timedelta(minutes=1),
                )
                .values(state=LeaseState.REVOKED.value, retired_at=self.now, next_attempt_at=None)
            )

    def webhook(self, lookups: int) -> tuple[list[float], list[float]]:
        with_leases = [self.deliver(run) for run in self._runs(lookups, 10)]
        without = [self.deliver(self.next_run + 1 + i) for i in range(lookups)]
        self.next_run += lookups + 1
        self.retire_queued()
        return with_leases, without

    def sweep(self, expired: int) -> float:
        self._runs(expired // 10, 10, expired=True)
        sweeper = Sweeper(self.service)
        started = time.perf_counter()
        report = sweeper.sweep(reconcile=False)
        elapsed = time.perf_counter() - started
        if report.expired != expired:
            raise RuntimeError(f"the sweep queued {report.expired} leases, not {expired}")
        self.retire_queued()
        return elapsed

    def poll(self) -> float:
        """The worker's claim when nothing is due (what it does every second when idle)."""

        def claim() -> None:
            with self.ledger.begin() as conn:
                found = claim_due(conn, now=self.now, limit=20, hold=timedelta(minutes=5))
            if found.leases:
                raise RuntimeError(f"{len(found.leases)} leases were due")

        return timed(claim)

    def gauges(self) -> float:
        def scrape() -> None:
            with self.ledger.begin() as conn:
                count_by_state(conn)
                backlog(conn, self.now)

        return timed(scrape)

    def plans(self) -> dict[str, Plans]:
        run = self._runs(1, 10)[0]
        found = {"webhook": explain(self.ledger, lambda: self.deliver(run))}
        self._runs(1, 10, expired=True)
        found["sweep"] = explain(self.ledger, lambda: Sweeper(self.service).sweep(reconcile=False))
        self.retire_queued()
        found["worker poll"] = explain(self.ledger, self.poll)
        found["metrics gauges"] = explain(self.ledger, self.gauges)
        self.retire_queued()
        return found
