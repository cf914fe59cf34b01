"""The sweeper: what no webhook will say. It queues leases past their TTL, asks GitHub about runs
with live run or job leases (GitHub drops deliveries and never redelivers on its own:
https://docs.github.com/webhooks/using-webhooks/handling-failed-webhook-deliveries) and queues
the log scan of each run it finds over, as the lost delivery would have (`handler.logscan`), deletes
environments no live lease uses where GitHub agrees they are runkeys' (`handler.ownership`), and
forgets ids that can no longer repeat (deliveries, token ids, broker requests). Every step is
idempotent, so replicas may sweep together."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from github import GithubException, UnknownObjectException

from handler.ledger.backlog import by_installation
from handler.ledger.broker import prune_requests
from handler.ledger.logscans import queue_scan
from handler.ledger.queue import ExpiredLeases, RunLeases, queue
from handler.ledger.runs import RunToCheck, mark_checked, runs_to_check
from handler.ledger.seen import prune
from handler.logs import event, logger
from handler.service import Service
from handler.worker import RevocationWorker
from runkeys.github.errors import github_message

# Repeated on purpose: event() calls look alike, but each names its own fields to log.
log = logger("sweeper")


@dataclass
class SweepReport:
    expired: int = 0
    runs_checked: int = 0
    reconciled: int = 0
    environments_deleted: int = 0
    deliveries_pruned: int = 0
    token_ids_pruned: int = 0
    broker_requests_pruned: int = 0
    installations_behind: int = 0
    errors: list[str] = field(default_factory=list)


class Sweeper:
    def __init__(self, service: Service, worker: RevocationWorker | None = None) -> None:
        self.service = service
        self.worker = worker or RevocationWorker(service)

    def sweep(self, *, reconcile: bool = True) -> SweepReport:
        report = SweepReport()
        now = self.service.clock()
        with self.service.ledger.begin() as conn:
            expired = queue(
                conn, ExpiredLeases(now), actor="sweeper", reason="sweeper: ttl", now=now
            )
            report.deliveries_pruned, report.token_ids_pruned = prune(conn, now=now)
            report.broker_requests_pruned = prune_requests(conn, now=now)
        report.expired = len(expired)
        if reconcile and self.service.config.github is not None:
            self._reconcile(report)
            report.environments_deleted = self.worker.delete_environments()
        if expired or report.reconciled:
            self.service.wake_worker()
        report.installations_behind = self._warn_if_behind()
        event(
            log,
            "sweep done",
            expired=report.expired,
            runs_checked=report.runs_checked,
            reconciled=report.reconciled,
            environments_deleted=report.environments_deleted,
            deliveries_pruned=report.deliveries_pruned,
            token_ids_pruned=report.token_ids_pruned,
            broker_requests_pruned=report.broker_requests_pruned,
            errors=len(report.errors),
        )
        return report

    def _warn_if_behind(self) -> int:
        """One warning per installation whose oldest queued retirement has waited longer
        than `backlog_warn_after`: workers down, too few, or GitHub holding them back."""
        limit = self.service.config.worker.backlog_warn_after.total_seconds()
        now = self.service.clock()
        with self.service.ledger.begin() as conn:
            behind = [b for b in by_installation(conn) if b.oldest_age(now) > limit]
        for found in behind:
            event(
                log,
                "retirement backlog is behind",
                level=logging.WARNING,
                installation=found.installation_id,
                waiting=found.waiting,
                oldest_waiting_seconds=round(found.oldest_age(now)),
                threshold_seconds=round(limit),
            )
        return len(behind)

    def _reconcile(self, report: SweepReport) -> None:
        now = self.service.clock()
        interval = self.service.config.worker.reconcile_interval
        with self.service.ledger.begin() as conn:
            runs = runs_to_check(conn, now=now, interval=interval)
        for run in runs:
            report.runs_checked += 1
            over = self._completed_attempts(run, report)
            with self.service.ledger.begin() as conn:
                mark_checked(conn, run, now=now)
                if over is None:
                    continue
                done_through, logs_kept = over
                if logs_kept:  # as the lost workflow_run delivery would have; a repeat adds none
                    queue_scan(
                        conn,
                        repository_id=run.repository_id,
                        run_id=run.run_id,
                        run_attempt=done_through,
                        installation_id=run.installation_id,
                        now=now,
                    )
                report.reconciled += len(
                    queue(
                        conn,
                        RunLeases(run.repository_id, run.run_id, done_through),
                        actor="sweeper",
                        reason=f"sweeper: GitHub reports run {run.run_id} attempt "
                        f"{done_through} completed",
                        now=now,
                    )
                )

    def _completed_attempts(self, run: RunToCheck, report: SweepReport) -> tuple[int, bool] | None:
        """The newest attempt of `run` that is over and whether the run (and its logs) is
        still there, or None if the leases' attempt is not over."""
        try:
            found = self.service.github.repository(run.repository).get_workflow_run(run.run_id)
            status, attempt = found.status, found.run_attempt
        except UnknownObjectException:
            return run.run_attempt, False  # the run was deleted: nothing will use its keys
        except GithubException as exc:
            message = f"{run.repository} run {run.run_id}: {exc.status} {github_message(exc)}"
            report.errors.append(message)
            event(log, "run status unknown", level=logging.WARNING, error=message)
            return None
        except Exception as exc:  # GitHub unreachable; try again next sweep
            report.errors.append(f"{run.repository} run {run.run_id}: {type(exc).__name__}")
            return None
        if status == "completed":
            return max(attempt, run.run_attempt), True
        if attempt > run.run_attempt:
            return attempt - 1, True  # a newer attempt started, so the older ones are over
        return None
