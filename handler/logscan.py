"""The scan of a completed run's logs for its keys (issue 18): masking hides only the forms it
was told of, not a key's hex, nor a password printed in a job that reads only its URL. When a
run with leases completes the webhook queues a scan of that attempt
(`handler.ledger.logscans`); the worker downloads that attempt's own log archive (not the run's
latest: a re-run may have started), looks in each step's log for the fingerprints of the run's
keys and their secret parts (`runkeys.leakscan`), and for each one found records
`leaked_in_logs` with the job, the step and the line, retires the key if it is still live,
counts it, and, when configured, deletes the run's logs. The service holds fingerprints only:
never a value.

The archive, as GitHub makes it: a zip holding `<job>/<n>_<step>.txt` for each step and
`<n>_<job>.txt` for each job, every line starting with its time
(https://docs.github.com/actions/monitoring-and-troubleshooting-workflows/monitoring-workflows/using-workflow-run-logs#downloading-logs)."""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from github import GithubException

from handler.ledger.history import record
from handler.ledger.logscans import (
    DONE,
    FAILED,
    QUEUED,
    LogScan,
    Wanted,
    claim_scans,
    finish_scan,
    repository_of,
    wanted,
)
from handler.ledger.queue import LeasesById, queue
from handler.logs import event, logger
from handler.service import Service
from runkeys.errors import RunkeysError
from runkeys.github.runlogs import ArchiveTooLargeError, RunLogs
from runkeys.leakscan import Found, scan_text
from runkeys.leases import LeaseState
from runkeys.scrub import described

# Repeated on purpose: event() calls look alike, but each names its own fields to log.
log = logger("logscan")
ACTOR = "log-scan"
REASON = "leaked_in_logs"
BATCH = 2  # archives are large: a worker takes few at a time
CLAIM = timedelta(minutes=5)
MAX_RECORDED = 10  # findings of one key written to its history; the rest are counted
_STEP = re.compile(r"^(\d+)_(.*)\.txt$")


@dataclass(frozen=True)
class Finding:
    """Where a fingerprint was found; never what."""

    job: str
    step: str | None  # None: the job's own log (the archive had no step logs for it)
    found: Found


@dataclass
class ArchiveScan:
    findings: list[Finding] = field(default_factory=list)
    scanned: int = 0  # bytes of text read
    truncated: bool = False  # the text passed the cap; the rest was not read


def _members(archive: zipfile.ZipFile) -> Iterator[tuple[str, str | None, zipfile.ZipInfo]]:
    """(job, step, member) for each log to read: every step's, and a job's own log only when
    the archive holds no step logs for that job (it repeats them)."""
    steps: list[tuple[str, str | None, zipfile.ZipInfo]] = []
    jobs: list[tuple[str, str | None, zipfile.ZipInfo]] = []
    for member in archive.infolist():
        if member.is_dir():
            continue
        folder, _, name = member.filename.rpartition("/")
        matched = _STEP.match(name)
        label = matched.group(2) if matched else name
        if folder:
            steps.append((folder, label, member))
        else:
            jobs.append((label, None, member))
    with_steps = {job for job, _, _ in steps}
    yield from steps
    yield from (entry for entry in jobs if entry[0] not in with_steps)


def scan_archive(data: bytes, fingerprints: Collection[str], *, max_bytes: int) -> ArchiveScan:
    """The fingerprints in a run's log archive, reading at most `max_bytes` of its text (a zip
    expands: the cap holds for what it expands to)."""
    result = ArchiveScan()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for job, step, member in _members(archive):
            left = max_bytes - result.scanned
            if left <= 0:
                result.truncated = True
                break
            with archive.open(member) as handle:
                raw = handle.read(left + 1)
            if len(raw) > left:
                raw, result.truncated = raw[:left], True
            result.scanned += len(raw)
            text = raw.decode("utf-8", errors="replace")
            result.findings += [Finding(job, step, f) for f in scan_text(text, fingerprints)]
    return result


class LogScanner:
    """The worker's log-scan step (`RevocationWorker.run_once` calls `run_once`)."""

    def __init__(self, service: Service, *, delay: Callable[[int], timedelta]) -> None:
        self.service = service
        self.settings = service.config.log_scan
        self.delay = delay  # before attempt n + 1, after n failed

    def run_once(self) -> int:
        """Scan the due scans of one batch; how many were claimed."""
        if not self.settings.enabled:
            return 0
        with self.service.ledger.begin() as conn:
            claimed = claim_scans(conn, now=self.service.clock(), limit=BATCH, hold=CLAIM)
        for scan in claimed:
            try:
                self.scan(scan)
            except Exception as exc:  # a scan's failure never holds the revocations back
                event(
                    log,
                    "log scan failed",
                    level=logging.ERROR,
                    run_id=scan.run_id,
                    run_attempt=scan.run_attempt,
                    error=self._describe(exc),
                )
        return len(claimed)

    def scan(self, scan: LogScan) -> None:
        with self.service.ledger.begin() as conn:
            repository = repository_of(conn, scan)
            looked_for = wanted(conn, scan)
        if repository is None:  # the run's leases are gone from the ledger
            self._finish(scan, DONE, "no leases", outcome="no_logs")
            return
        logs = RunLogs(self.service.github, repository)
        try:
            url = logs.archive_url(scan.run_id, scan.run_attempt)
            if url is None:
                self._again(scan, repository, "GitHub has no logs for the run (yet)", "no_logs")
                return
            data = logs.download(url, max_bytes=self.settings.max_bytes)
        except ArchiveTooLargeError as exc:
            self._finish(
                scan, DONE, f"not scanned: {exc}", outcome="too_large", level=logging.WARNING
            )
            return
        except Exception as exc:  # GitHub or the download failed: tried again later
            self._again(scan, repository, self._describe(exc), "retry")
            return
        try:
            result = scan_archive(data, looked_for.keys(), max_bytes=self.settings.max_bytes)
        except Exception as exc:  # not a zip, or one zipfile cannot read: trying again won't help
            why = "not a zip file" if isinstance(exc, zipfile.BadZipFile) else type(exc).__name__
            self._finish(
                scan, FAILED, f"the log archive could not be read: {why}", outcome="failed"
            )
            return
        self._found(scan, repository, result, looked_for, logs)

    def _found(
        self,
        scan: LogScan,
        repository: str,
        result: ArchiveScan,
        looked_for: Mapping[str, list[Wanted]],
        logs: RunLogs,
    ) -> None:
        now = self.service.clock()
        where = f"run {scan.run_id} attempt {scan.run_attempt}"
        recorded: dict[str, int] = {}
        live: set[str] = set()
        with self.service.ledger.begin() as conn:
            for finding in result.findings:
                hit = finding.found.hit
                self.service.metrics.leaks_in_logs.labels(form=hit.form).inc()
                for owner in looked_for.get(hit.fingerprint, []):
                    count = recorded.get(owner.lease_id, 0) + 1
                    recorded[owner.lease_id] = count
                    if owner.state == LeaseState.ACTIVE.value:
                        live.add(owner.lease_id)
                    if count > MAX_RECORDED:
                        continue
                    what = "its value" if owner.part is None else f"its part {owner.part}"
                    step = "the job's log" if finding.step is None else f"step {finding.step!r}"
                    detail = (
                        f"{owner.key_name} ({what}, {hit.form}) in the logs of {where}: "
                        f"job {finding.job!r}, {step}, line {finding.found.line}"
                    )
                    record(
                        conn, [owner.lease_id], actor=ACTOR, action=REASON, detail=detail, now=now
                    )
                    event(
                        log,
                        "key found in a run's logs",
                        level=logging.WARNING,
                        lease=owner.lease_id,
                        key=owner.key_name,
                        part=owner.part,
                        form=hit.form,
                        repository=repository,
                        run_id=scan.run_id,
                        run_attempt=scan.run_attempt,
                        job=finding.job,
                        step=finding.step,
                        line=finding.found.line,
                    )
            for lease_id, count in recorded.items():
                if count > MAX_RECORDED:
                    more = f"{count - MAX_RECORDED} more findings in the logs of {where}"
                    record(conn, [lease_id], actor=ACTOR, action=REASON, detail=more, now=now)
            if live:
                reason = f"{REASON}: found in the logs of {where}"
                queue(conn, LeasesById(tuple(sorted(live))), actor=ACTOR, reason=reason, now=now)
        note = f"{result.scanned} bytes scanned, {len(result.findings)} findings"
        if result.truncated:
            note += f"; the rest not scanned (over {self.settings.max_bytes} bytes)"
        if result.findings and self.settings.delete_leaked:
            note += "; " + self._delete(logs, scan, repository, list(recorded))
        if live:
            self.service.wake_worker()
        outcome = "leaked" if result.findings else ("truncated" if result.truncated else "clean")
        level = logging.WARNING if result.truncated else logging.INFO
        self._finish(scan, DONE, note, outcome=outcome, findings=len(result.findings), level=level)

    def _delete(self, logs: RunLogs, scan: LogScan, repository: str, lease_ids: list[str]) -> str:
        """Delete the run's logs (RUNKEYS_DELETE_LEAKED_LOGS); what became of them."""
        try:
            deleted = logs.delete(scan.run_id)
        except Exception as exc:
            said = f"the logs were not deleted: {self._describe(exc)}"
        else:
            said = "the logs were deleted" if deleted else "the logs were gone already"
        with self.service.ledger.begin() as conn:
            detail = f"{said} (run {scan.run_id} of {repository})"
            record(
                conn,
                lease_ids,
                actor=ACTOR,
                action="logs_deleted",
                detail=detail,
                now=self.service.clock(),
            )
        return said

    def _again(self, scan: LogScan, repository: str, why: str, outcome: str) -> None:
        """Try again later, or give up after the attempts allowed."""
        if scan.attempts >= self.settings.give_up_after:
            state = DONE if outcome == "no_logs" else FAILED
            self._finish(scan, state, f"given up: {why}", outcome=outcome, level=logging.WARNING)
            return
        now = self.service.clock()
        retry_at = now + self.delay(scan.attempts)
        with self.service.ledger.begin() as conn:
            finish_scan(conn, scan, state=QUEUED, note=why, now=now, retry_at=retry_at)
        self.service.metrics.log_scans.labels(outcome="retry").inc()
        event(
            log,
            "log scan to be tried again",
            repository=repository,
            run_id=scan.run_id,
            run_attempt=scan.run_attempt,
            attempts=scan.attempts,
            reason=why,
            retry_at=retry_at.isoformat(),
        )

    def _finish(
        self,
        scan: LogScan,
        state: str,
        note: str,
        *,
        outcome: str,
        findings: int = 0,
        level: int = logging.INFO,
    ) -> None:
        with self.service.ledger.begin() as conn:
            finish_scan(
                conn, scan, state=state, note=note, findings=findings, now=self.service.clock()
            )
        self.service.metrics.log_scans.labels(outcome=outcome).inc()
        event(
            log,
            "log scan finished",
            level=level,
            run_id=scan.run_id,
            run_attempt=scan.run_attempt,
            repository_id=scan.repository_id,
            outcome=outcome,
            findings=findings,
            note=note,
        )

    def _describe(self, exc: BaseException) -> str:
        """A short reason, every connection password scrubbed out (a download URL is not
        named: it is signed)."""
        known = [s for c in self.service.config.connections.values() for s in c.secrets()]
        if isinstance(exc, RunkeysError | GithubException | ValueError):
            return described(exc, known)
        return type(exc).__name__
