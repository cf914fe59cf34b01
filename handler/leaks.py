"""Secret scanning alerts retire leaked keys (issue 18, item 1): the worker's part.

The webhook records each `secret_scanning_alert` (`handler.ledger.alerts`). Each worker cycle,
before it claims due leases, `check` takes the recorded alerts and for each one:

1. fetches it with the App's installation token (the delivery carries no value; the alert
   does: https://docs.github.com/rest/secret-scanning/secret-scanning#get-a-secret-scanning-alert),
   paced by the installation as every GitHub call of the worker is
   (`runkeys.github.alerts.SecretScanningAlerts`);
2. fingerprints the value, and every candidate a log scan would cut from it (a password in a
   connection string: `runkeys.leakscan.fingerprints_in`), and lets it go;
3. queues the live leases of that repository (by the signed delivery's repository id, never
   another's) whose value or secret part (a database key's password) has one of those
   fingerprints, reason `leaked` and the alert's address: the same cycle's claim retires them.

After the cycle retired what it claimed, `resolve` resolves each alert whose leases are all
revoked: `resolved`, resolution `revoked`, and a comment saying runkeys retired the key.
When the installation's GitHub budget is spent for longer than a call may wait (`PacingWait`),
either step puts the alert off until the budget allows: no failed attempt, as for a lease.

An alert on a value that is no lease of the repository (another repository's key, or nothing
runkeys made), or only on leases retired already, changes no lease and leaves the alert open:
GitHub keeps a comment on an alert only when it is resolved, and resolving an alert runkeys did
not act on would hide it from the people who must. The ledger row's `outcome` and a log line
say what was found; a lease retired already gets a `leak_reported` event in its history.

The value is never logged, stored or put in an error; its fingerprint lives for one query."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from handler.ledger.alerts import (
    TO_FETCH,
    TO_RESOLVE,
    AlertRecord,
    AlertState,
    Matches,
    Outcome,
    all_revoked,
    claim_alerts,
    finish_alert,
    matching_leases,
    retry_alert,
)
from handler.ledger.history import record
from handler.ledger.queue import LeasesById, queue
from handler.logs import event, logger
from handler.service import Service
from runkeys.errors import GitHubError
from runkeys.github.alerts import SecretScanningAlerts
from runkeys.github.pacing import PacingWait
from runkeys.leakscan import fingerprints_in

log = logger("leaks")
Answer = TypeVar("Answer")
ACTOR = "secret-scanning"
# GitHub shows it on the resolved alert; lease ids say which keys, never a value.
COMMENT = "runkeys retired this key as soon as the alert was raised (revoked; lease {leases})."
COMMENT_LIMIT = 250


class AlertResponder:
    """Works the recorded alerts for a `RevocationWorker`, with its retry policy: `delay`
    after a number of failed attempts, `retryable` for an error."""

    def __init__(
        self,
        service: Service,
        *,
        delay: Callable[[int], timedelta],
        retryable: Callable[[BaseException], bool],
        describe: Callable[[Exception], str],
    ) -> None:
        self.service = service
        self.settings = service.config.worker
        self.delay = delay
        self.retryable = retryable
        self.describe = describe

    # -- fetch and match ---------------------------------------------------------------------

    def check(self) -> int:
        """Fetch and match the alerts due; how many were taken."""
        return self._work(TO_FETCH, self._check)

    def _work(self, states: Sequence[AlertState], step: Callable[[AlertRecord, str], None]) -> int:
        """Claim the alerts due in `states` and take `step` on each; how many were taken."""
        with self.service.ledger.begin() as conn:
            token, claimed = claim_alerts(
                conn,
                now=self.service.clock(),
                limit=self.settings.batch_size,
                hold=self.settings.claim_timeout,
                states=states,
            )
        for alert in claimed:
            step(alert, token)
        return len(claimed)

    def _check(self, alert: AlertRecord, token: str) -> None:
        read = self._ask_github(alert, token, partial(self._read, alert))
        if read is None:
            return
        prints, html_url = read
        now = self.service.clock()
        reason = f"leaked: secret scanning alert {html_url}"
        with self.service.ledger.begin() as conn:
            matches = matching_leases(
                conn,
                repository_id=alert.repository_id,
                installation_id=alert.installation_id,
                fingerprints=prints,
            )
            retiring = [*matches.live, *matches.retiring]
            if retiring:
                queue(conn, LeasesById(matches.live), actor=ACTOR, reason=reason, now=now)
                # queued already for another reason: the leak is in its history all the same
                record(conn, matches.retiring, actor=ACTOR, action="leaked", detail=reason, now=now)
                state, outcome = AlertState.MATCHED, None
            else:
                detail = f"secret scanning alert {html_url} on this key, retired before: left open"
                reported = matches.retired
                record(conn, reported, actor=ACTOR, action="leak_reported", detail=detail, now=now)
                state = AlertState.DONE
                outcome = Outcome.RETIRED_ALREADY if matches.retired else Outcome.NO_MATCH
            held = finish_alert(
                conn,
                alert,
                token,
                state=state,
                outcome=outcome,
                lease_ids=retiring,
                html_url=html_url,
                now=now,
            )
        self._told(alert, held, outcome, html_url=html_url, retiring=retiring, matches=matches)

    def _told(
        self,
        alert: AlertRecord,
        held: bool,
        outcome: Outcome | None,
        *,
        html_url: str,
        retiring: list[str],
        matches: Matches,
    ) -> None:
        """Log, count and wake the worker for what `_check` found (`outcome` None: retiring
        `leases`); the trust decisions are all `_check`'s."""
        if not held:
            event(log, "alert claim lost", level=logging.WARNING, **self._fields(alert))
            return
        if outcome is not None:
            self.service.metrics.secret_alerts.labels(outcome=outcome.value).inc()
        event(
            log,
            "secret scanning alert: no live key" if outcome else "secret scanning alert matched",
            level=logging.WARNING,
            **self._fields(alert),
            html_url=html_url,
            outcome=(outcome or "retiring"),
            leases=retiring or list(matches.retired),
        )
        if outcome is None:
            self.service.wake_worker()

    def _read(self, alert: AlertRecord) -> tuple[list[str], str]:
        """The fingerprints to look for (the value's and its candidates') and the alert's
        address; the value goes with this frame."""
        found = self._alerts(alert).read(alert.number)
        value = found.secret
        if not value:
            raise GitHubError("GitHub's alert has no secret to match (was it hidden?)")
        return fingerprints_in(value), found.html_url

    # -- resolve -----------------------------------------------------------------------------

    def resolve(self) -> int:
        """Resolve the alerts whose leases are all revoked now; how many were taken."""
        return self._work(TO_RESOLVE, self._resolve)

    def _resolve(self, alert: AlertRecord, token: str) -> None:
        now = self.service.clock()
        with self.service.ledger.begin() as conn:
            ready = all_revoked(conn, alert.lease_ids)
            if not ready:  # still retiring (or failing): look again soon, not counted
                retry_alert(conn, alert, token, now=now, retry_at=now + self.settings.backoff_base)
                return
        resolve = partial(self._resolve_on_github, alert)
        if not self._ask_github(alert, token, resolve):
            return
        with self.service.ledger.begin() as conn:
            held = finish_alert(
                conn,
                alert,
                token,
                state=AlertState.DONE,
                outcome=Outcome.RETIRED,
                lease_ids=alert.lease_ids,
                now=self.service.clock(),
            )
        if held:
            self.service.metrics.secret_alerts.labels(outcome=Outcome.RETIRED.value).inc()
            event(log, "secret scanning alert resolved", **self._fields(alert))

    def _resolve_on_github(self, alert: AlertRecord) -> bool:
        """Resolve the alert as revoked, unless someone resolved it meanwhile (however they
        did: theirs stands). Asked for without its value."""
        alerts = self._alerts(alert)
        if alerts.state(alert.number) == "resolved":
            return True
        alerts.resolve_revoked(alert.number, _comment(alert.lease_ids))
        return True

    # -- shared ------------------------------------------------------------------------------

    def _ask_github(
        self, alert: AlertRecord, token: str, call: Callable[[], Answer]
    ) -> Answer | None:
        """What `call` answers, or None when it failed or its installation's budget is spent
        (recorded, to be tried again)."""
        try:
            return call()
        except PacingWait as wait:
            self._put_off(alert, token, wait)
        except Exception as exc:
            self._failed(alert, token, exc)
        return None

    def _alerts(self, alert: AlertRecord) -> SecretScanningAlerts:
        github = self.service.github
        if alert.installation_id is not None:  # from the signed delivery: no need to ask
            github.remember_installation(alert.repository, alert.installation_id)
        return SecretScanningAlerts(github, alert.repository)

    def _put_off(self, alert: AlertRecord, token: str, wait: PacingWait) -> None:
        """GitHub's budget, not a failure (as for a lease): not counted, never given up on,
        looked at again once the budget allows."""
        now = self.service.clock()
        retry_at = now + timedelta(seconds=wait.wait)
        with self.service.ledger.begin() as conn:
            retry_alert(conn, alert, token, now=now, retry_at=retry_at)
        event(
            log,
            "secret scanning alert waits for GitHub's budget",
            **self._fields(alert),
            error=self.describe(wait),
            retry_at=retry_at.isoformat(),
        )

    def _failed(self, alert: AlertRecord, token: str, exc: Exception) -> None:
        """Back off as a lease does. GitHub's 404 may be an alert not readable yet, so it is
        retried too. An alert to resolve stays to resolve: giving up on it would look at it
        again as new, and find its leases retired."""
        error = self.describe(exc)
        attempts = alert.attempts + 1
        not_found = isinstance(exc, GitHubError) and exc.status == 404
        give_up = attempts >= self.settings.max_attempts or not (self.retryable(exc) or not_found)
        delay = self.settings.failed_retry if give_up else self.delay(attempts)
        asked = exc.retry_after if isinstance(exc, GitHubError) else None
        if asked is not None:  # GitHub's Retry-After: no sooner (capped, as for a lease)
            delay = max(delay, min(timedelta(seconds=asked), self.settings.failed_retry))
        now = self.service.clock()
        with self.service.ledger.begin() as conn:
            retry_alert(
                conn,
                alert,
                token,
                now=now,
                retry_at=now + delay,
                error=error,
                give_up=give_up and alert.state is not AlertState.MATCHED,
            )
        outcome = "failed" if give_up else "retry"
        self.service.metrics.secret_alerts.labels(outcome=outcome).inc()
        event(
            log,
            "secret scanning alert failed" if give_up else "secret scanning alert attempt failed",
            level=logging.ERROR if give_up else logging.WARNING,
            **self._fields(alert),
            attempts=attempts,
            error=error,
            retry_at=(now + delay).isoformat(),
        )

    @staticmethod
    def _fields(alert: AlertRecord) -> dict[str, Any]:
        return {
            "repository": alert.repository,
            "repository_id": alert.repository_id,
            "alert": alert.number,
            "installation": alert.installation_id,
        }


def _comment(lease_ids: Sequence[str]) -> str:
    return COMMENT.format(leases=", ".join(lease_ids))[:COMMENT_LIMIT]
