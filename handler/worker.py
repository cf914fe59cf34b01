"""The revocation worker: claim due leases, retire each (`runkeys.retire`), delete the environments
no live lease uses where GitHub agrees (`handler.ownership`), and record the outcome.

Failures back off exponentially with jitter, capped (Vault's expiration manager is the model);
after `max_attempts` a lease is `failed` (logged, counted), still retried every `failed_retry`."""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta

from sqlalchemy import Connection

from handler.heartbeat import Heartbeat
from handler.leaks import AlertResponder
from handler.ledger.alerts import due_alerts
from handler.ledger.completions import apply_completions, pending
from handler.ledger.environments import EnvironmentRecord, deletable, mark
from handler.ledger.history import record, revoked_ahead
from handler.ledger.queue import (
    Claim,
    claim_due,
    finish_failed,
    finish_revoked,
    release_revoked_ahead,
)
from handler.ledger.records import LeaseRecord
from handler.ledger.secrets import newer_writer
from handler.logs import event, logger
from handler.logscan import LogScanner
from handler.ownership import environment_kept_because, secret_kept_because
from handler.service import Service
from runkeys.errors import ConfigError, GitHubError, ProviderError, RunkeysError
from runkeys.github.pacing import InstallationPace, PacingWait
from runkeys.github.secrets import EnvironmentFacts
from runkeys.retire import RetireRequest, delete_secret, retire, revoke
from runkeys.scrub import described

# Repeated on purpose: event() calls look alike, but each names its own fields to log.
log = logger("worker")


# The end of a wait for GitHub's budget that the worker leaves to the pace (which counts it).
PACE_SLICE = 0.1


def backoff(attempts: int, *, base: timedelta, cap: timedelta, rng: random.Random) -> timedelta:
    """Delay before attempt `attempts + 1`: base·2^(attempts-1), capped, half of it fixed and
    half random ("equal jitter"), so leases that failed together do not retry together."""
    exponent = min(max(attempts - 1, 0), 62)
    delay = min(cap.total_seconds(), base.total_seconds() * 2.0**exponent)
    return timedelta(seconds=delay / 2 + rng.uniform(0, delay / 2))


def retryable(exc: BaseException) -> bool:
    """Whether trying again soon may work. A missing connection or a refused revoke needs a
    person: such a lease is marked `failed` at once (and still retried, slowly)."""
    if isinstance(exc, ProviderError | GitHubError):
        return exc.retryable
    return not isinstance(exc, ConfigError | RunkeysError)


class RevocationWorker:
    def __init__(self, service: Service, *, rng: random.Random | None = None) -> None:
        self.service = service
        self.settings = service.config.worker
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not secrets)
        self.name = f"worker-{uuid.uuid4().hex[:8]}"
        self.wake = threading.Event()  # set when work is queued (`handler.background.WorkLoop`)
        self.log_scanner = LogScanner(service, delay=self._delay)
        self.alerts = AlertResponder(
            service,
            delay=self._delay,
            retryable=retryable,
            describe=self._describe,
        )

    def _delay(self, attempts: int) -> timedelta:
        """Before the next attempt of work that failed `attempts` times (alerts, log scans)."""
        return backoff(
            attempts, base=self.settings.backoff_base, cap=self.settings.backoff_max, rng=self.rng
        )

    def run_once(self) -> int:
        """Scan the logs of completed runs for their keys (issue 18), apply the run completions
        the webhook recorded (their leases are then due), match the secret scanning alerts it
        recorded (their leases are then due too), claim one batch of due leases and retire
        them, then resolve the alerts whose leases are retired; how many leases were claimed."""
        self.log_scanner.run_once()
        self.alerts.check()
        claimed = self._retire_due()
        self.alerts.resolve()
        return claimed

    def _retire_due(self, *, skip: frozenset[int] = frozenset()) -> int:
        """Claim one batch of due leases (none of the installations in `skip`) and retire
        them; how many were claimed, with those claimed meanwhile (`retire_all`)."""
        with self.service.ledger.begin() as conn:
            apply_completions(conn, limit=self.settings.batch_size)
            claim, ahead = self._claim(conn, skip=skip)
        if not claim.leases:
            return 0
        with self._heartbeat(claim) as beat:
            # Every key dies at its provider first: GitHub's budget holds back only deletions.
            held: list[LeaseRecord] = []
            revoked: set[str] = set()
            for lease in claim.leases:  # asked one by one: a lease re-taken meanwhile is theirs
                if self._held(lease, beat.holds):
                    held.append(lease)
                    if lease.id in ahead or self._revoke(lease, claim.token):
                        revoked.add(lease.id)
            # each result committed on its own, as soon as known
            meanwhile = self.retire_all(
                held, claim.token, holds=beat.holds, revoked=revoked, paced=skip
            )
        return len(claim.leases) + meanwhile

    def _claim(
        self, conn: Connection, *, skip: Collection[int] = (), only: Collection[int] | None = None
    ) -> tuple[Claim, set[str]]:
        """One batch of due leases (`claim_due`: none of `skip`'s installations, only `only`'s),
        and those among them revoked ahead already: dead at their providers, only their
        deletions are left."""
        claim = claim_due(
            conn,
            now=self.service.clock(),
            limit=self.settings.batch_size,
            hold=self.settings.claim_timeout,
            skip_installations=skip,
            only_installations=only,
        )
        return claim, revoked_ahead(conn, [lease.id for lease in claim.leases])

    def _heartbeat(self, claim: Claim) -> Heartbeat:
        ids = [lease.id for lease in claim.leases]
        return Heartbeat(self.service, claim.token, ids, hold=self.settings.claim_timeout)

    def _revoke_ahead(self, installations: frozenset[int]) -> int:
        """While these installations wait for GitHub's budget: claim one batch of their further
        due leases not revoked ahead yet and revoke each at its provider now, leaving its
        secret's deletion (its environment's, once) due, for a claim that works it when the
        budget allows; recorded, so that whichever worker claims it then, also after a crash,
        only deletes. A crash before the record leaves the claim to lapse: the next worker
        revokes those keys again, which every provider answers as gone (their conformance
        tests). How many were claimed."""
        if not installations:
            return 0
        with self.service.ledger.begin() as conn:
            claim, ahead = self._claim(conn, only=installations)
        if not claim.leases:
            return 0
        with self._heartbeat(claim) as beat:
            pending: list[str] = []
            for lease in claim.leases:
                if not self._held(lease, beat.holds):
                    continue
                if lease.provider_only or lease.secret is None:  # no GitHub write to wait for
                    self.retire(lease, claim.token, revoked=lease.id in ahead)
                elif lease.id in ahead or self._revoke(lease, claim.token):
                    pending.append(lease.id)
            with self.service.ledger.begin() as conn:
                release_revoked_ahead(
                    conn,
                    pending,
                    claim.token,
                    now=self.service.clock(),
                    detail="revoked at the provider; its secret waits for GitHub's budget",
                )
        return len(claim.leases)

    def drain(self, *, max_batches: int = 1000) -> int:
        """Work until nothing is due (tests, `runkeys worker --once`)."""
        total = 0
        for _ in range(max_batches):
            done = self.run_once()
            total += done
            if not done and not self.completions_pending():
                break
        return total

    def completions_pending(self) -> bool:
        """Recorded run completions are left: a batch of them can queue nothing (their leases
        were retired since), and the next batch may still hold some with live leases. So are
        secret scanning alerts due to be looked at or resolved."""
        with self.service.ledger.begin() as conn:
            return pending(conn) > 0 or due_alerts(conn, now=self.service.clock()) > 0

    def _keep_secret(self, lease: LeaseRecord) -> str | None:
        """Why the lease's secret stays (asked after the revoke), or None to delete it."""
        with self.service.ledger.begin() as conn:
            newer = newer_writer(conn, lease)
        if newer is not None:
            return f"lease {newer} wrote it since and is still live"
        assert lease.secret is not None
        written_at = self.service.secrets_for(lease.repository).secret_written_at(lease.secret)
        kept = secret_kept_because(written_at, lease.created_at)
        if kept is not None:
            event(
                log,
                "secret not deleted: GitHub says runkeys did not write it",
                level=logging.WARNING,
                lease=lease.id,
                repository=lease.repository,
                secret=lease.secret.name,
                environment=lease.secret.environment,
                reason=kept,
            )
        return kept

    def retire_all(
        self,
        leases: Sequence[LeaseRecord],
        token: str,
        *,
        holds: Callable[[str], bool] = lambda _lease_id: True,
        revoked: Collection[str] | None = None,
        paced: frozenset[int] | None = None,
    ) -> int:
        """Retire a claimed batch. The leases of an environment runkeys created that no other
        live lease uses retire together: revoked at their providers, then the environment is
        deleted once, its secrets with it, instead of each secret first (GitHub's write budget
        is what bounds retiring, issue 16). Every other lease retires on its own. `holds`:
        whether the claim on a lease still holds (the heartbeat's word), asked before it;
        `revoked`: the leases revoked at their providers already (the others' revoke failed and
        is recorded; None: none revoked yet, each is revoked here).

        The installation whose budget allows a write soonest goes first, so that one
        installation's pace does not keep the others' claimed leases waiting behind it. With
        `paced` (the installations waiting on their budget further up, in a claim of the
        worker's that holds this one), when every unit left must wait for its installation's
        budget, the worker claims and works the other installations' due work meanwhile
        instead of sleeping (`_retire_due`), then revokes the waiting installations' further
        due keys at their providers (`_revoke_ahead`), and comes back when none is left; how
        many leases it claimed meanwhile to retire."""

        def held(lease: LeaseRecord) -> bool:
            if holds(lease.id):
                return True
            # lapsed and re-taken: the other worker has it
            event(log, "claim lost", level=logging.WARNING, lease=lease.id)
            return False

        def started(lease: LeaseRecord) -> bool:  # to retire here (not failed at its revoke)
            return revoked is None or lease.id in revoked

        units: list[list[LeaseRecord]] = []  # a lease alone, or an environment's together
        together: dict[tuple[int, str], list[LeaseRecord]] = {}
        for lease in leases:
            environment = lease.secret.environment if lease.secret is not None else None
            if environment is None or lease.provider_only:
                units.append([lease])
            else:
                key = (lease.repository_id, environment.lower())
                if key not in together:
                    together[key] = []
                    units.append(together[key])
                together[key].append(lease)
        meanwhile = 0
        while units:
            unit = min(units, key=lambda u: self._ready_in(u[0]))
            if paced is not None and self._ready_in(unit[0]) > 0:
                waiting = {u[0].installation_id for u in units if self._ready_in(u[0]) > 0}
                skip = paced | {i for i in waiting if i is not None}
                # The others' work first (fairness), then the waiting ones' further keys die
                # (claimed again to be retired once the budget allows: not counted here).
                done = self._retire_due(skip=skip)
                meanwhile += done
                if done or self._revoke_ahead(skip):
                    continue  # work done meanwhile: which is readiest now
                ready = self._ready_in(unit[0])
                if PACE_SLICE < ready <= self._max_wait(unit[0]):
                    # Nothing else to do: wait for the budget here, woken by work queued
                    # meanwhile (or looking again each poll), not asleep in the pace for all of
                    # it; the pace waits out (and counts) the last slice.
                    since = time.monotonic()
                    self.wake.wait(min(ready - PACE_SLICE, self.settings.poll_interval))
                    self.wake.clear()
                    self._pace(unit[0]).waited_before(time.monotonic() - since)
                    continue
            units.remove(unit)
            # A lease whose revoke failed stays in its group: its secret keeps the environment.
            group = [lease for lease in unit if not started(lease) or held(lease)]
            environment = group[0].secret.environment if group and group[0].secret else None
            if environment is not None and not group[0].provider_only:
                env = self._deletable_after(group[0].repository_id, environment.lower(), group)
                if env is not None:
                    self._retire_with_environment(env, group, token, revoked=revoked)
                    continue
            for lease in filter(started, group):
                self.retire(lease, token, revoked=revoked is not None)
        return meanwhile

    def _held(self, lease: LeaseRecord, holds: Callable[[str], bool]) -> bool:
        if holds(lease.id):
            return True
        event(log, "claim lost", level=logging.WARNING, lease=lease.id)  # re-taken: theirs now
        return False

    def _revoke(self, lease: LeaseRecord, token: str) -> bool:
        """Revoke at the provider (no GitHub write is paced here); False: the attempt failed."""
        try:
            revoke(
                RetireRequest.of(lease, secret=None),
                registry=self.service.registry,
                connections=self.service.config.connections,
            )
        except Exception as exc:
            self._failed(lease, token, exc)
            return False
        return True

    def _ready_in(self, lease: LeaseRecord) -> float:
        """Seconds before the lease's installation may write to GitHub (0: now, or no write).
        By the installation the ledger holds (from the verified token): ordering asks GitHub
        nothing, least of all about a row the worker will refuse to send."""
        if lease.provider_only or lease.secret is None or lease.installation_id is None:
            return 0.0
        return self.service.pacing.of(lease.installation_id).ready_in(write=True)

    def _pace(self, lease: LeaseRecord) -> InstallationPace:
        assert lease.installation_id is not None  # only a lease whose write waits is asked
        return self.service.pacing.of(lease.installation_id)

    def _max_wait(self, lease: LeaseRecord) -> float:
        """The longest wait for GitHub's budget the pace sits out (a longer one is put off)."""
        return self._pace(lease).limits.max_wait

    def _deletable_after(
        self, repository_id: int, name: str, group: Sequence[LeaseRecord]
    ) -> EnvironmentRecord | None:
        """The environment, if runkeys created it and no live lease but `group` uses it."""
        with self.service.ledger.begin() as conn:
            found = deletable(
                conn, repository_id=repository_id, name=name, retiring=[g.id for g in group]
            )
        return found[0] if found else None

    def _retire_with_environment(
        self,
        env: EnvironmentRecord,
        group: Sequence[LeaseRecord],
        token: str,
        *,
        revoked: Collection[str] | None = None,
    ) -> None:
        if revoked is not None:
            done = [lease for lease in group if lease.id in revoked]
            self._delete_with_environment(env, group, done, token)
            return
        done = []
        for lease in group:
            try:
                revoke(
                    RetireRequest.of(lease, secret=lease.secret),
                    registry=self.service.registry,
                    connections=self.service.config.connections,
                )
            except Exception as exc:
                self._failed(lease, token, exc)
            else:
                done.append(lease)
        self._delete_with_environment(env, group, done, token)

    def _delete_with_environment(
        self,
        env: EnvironmentRecord,
        group: Sequence[LeaseRecord],
        revoked: Sequence[LeaseRecord],
        token: str,
    ) -> None:
        # A lease not revoked still lives in the environment: it stays, so each secret goes.
        went = self._delete_environment(env, group) if len(revoked) == len(group) else None
        for lease in revoked:
            if went is None:
                self._delete_secret(lease, token)
            else:
                self._finish(lease, token, detail=f"revoked at the provider, {went}")

    def _delete_environment(
        self, env: EnvironmentRecord, group: Sequence[LeaseRecord]
    ) -> str | None:
        """Delete the environment of `group`'s revoked leases, asked again now (a lease may
        have come to use it since) and with GitHub's word on it; what became of it, or None
        when it stays (then each secret is deleted on its own). A failed DELETE is left to the
        sweeper's pass, as the environment stays a candidate."""
        if self._deletable_after(env.repository_id, env.name, group) is None:
            return None
        store = self.service.secrets_for(env.repository)
        try:
            facts = store.environment_facts(env.name)
        except Exception as exc:
            self._environment_failed(env, exc)
            return None
        kept = None if facts is None else environment_kept_because(facts, env.named_at)
        if kept is None:
            try:
                if facts is not None:
                    store.delete_environment(env.name)
            except Exception as exc:
                self._environment_failed(env, exc)
                return f"its secret goes with environment {env.name} (its deletion failed; retried)"
        self._mark_environment(env, facts, kept)
        if kept is not None:
            return None
        if facts is None:
            return f"its secret went with environment {env.name} (already deleted)"
        return f"secret deleted with environment {env.name}"

    def _delete_secret(self, lease: LeaseRecord, token: str) -> None:
        """The second half of retiring a revoked lease whose environment stays."""
        try:
            kept_for = self._keep_secret(lease)
            if kept_for is None:
                request = RetireRequest.of(lease, secret=lease.secret)
                delete_secret(request, self.service.secrets_for)
        except Exception as exc:
            self._failed(lease, token, exc)
            return
        deleted = ", secret deleted" if kept_for is None else ""
        self._finish(lease, token, detail=f"revoked at the provider{deleted}", kept_for=kept_for)

    def retire(self, lease: LeaseRecord, token: str, *, revoked: bool = False) -> None:
        """Retire one lease: revoke (unless `revoked` already), delete its secret, then its
        environment if that was the last live lease in one runkeys created."""
        request = RetireRequest.of(lease, secret=None if lease.provider_only else lease.secret)
        try:
            retired = retire(
                request,
                registry=self.service.registry,
                connections=self.service.config.connections,
                secrets_for=None if lease.provider_only else self.service.secrets_for,
                keep_secret=lambda: self._keep_secret(lease),
                revoked=revoked,
            )
        except Exception as exc:
            self._failed(lease, token, exc)
            return
        kept_for = retired.kept_for
        deleted = not lease.provider_only and kept_for is None
        detail = "revoked at the provider" + (", secret deleted" if deleted else "")
        if not self._finish(lease, token, detail=detail, kept_for=kept_for):
            return
        if lease.secret and lease.secret.environment and not lease.provider_only:
            self.delete_environments(lease.repository_id, lease.secret.environment)

    def _finish(
        self, lease: LeaseRecord, token: str, *, detail: str, kept_for: str | None = None
    ) -> bool:
        """Record the lease revoked; False when the claim was lost."""
        now = self.service.clock()
        with self.service.ledger.begin() as conn:
            done = finish_revoked(conn, lease.id, token, now=now, detail=detail)
            if done and kept_for is not None:
                record(
                    conn,
                    [lease.id],
                    actor="worker",
                    action="secret_kept",
                    detail=f"secret kept: {kept_for}",
                    now=now,
                )
        if not done:  # our claim lapsed and another worker took the lease: it records the end
            event(log, "claim lost", level=logging.WARNING, lease=lease.id)
            return False
        self.service.metrics.revocations.labels(outcome="revoked").inc()
        if lease.retire_requested_at is not None:
            latency = (now - lease.retire_requested_at).total_seconds()
            self.service.metrics.revocation_latency.observe(max(latency, 0.0))
        event(
            log,
            "lease revoked",
            lease=lease.id,
            repository=lease.repository,
            attempts=lease.attempts,
            secret_kept_for=kept_for,
        )
        return True

    def _failed(self, lease: LeaseRecord, token: str, exc: Exception) -> None:
        error = self._describe(exc)
        now = self.service.clock()
        give_up = lease.attempts >= self.settings.max_attempts or not retryable(exc)
        if isinstance(exc, PacingWait):
            # GitHub's budget, not a failure: never given up on, tried again once it allows
            # (spread a little, so the leases that waited together do not all start at once).
            give_up = False
            delay = timedelta(seconds=exc.wait * self.rng.uniform(1.0, 1.1))
        elif give_up:
            delay = self.settings.failed_retry * self.rng.uniform(0.9, 1.1)
        else:
            delay = backoff(
                lease.attempts,
                base=self.settings.backoff_base,
                cap=self.settings.backoff_max,
                rng=self.rng,
            )
        asked = None if isinstance(exc, PacingWait) else self._asked_to_wait(exc)
        if asked is not None and asked > delay:
            delay = asked
            # First: the reason must survive `last_error`'s cut at 300 characters.
            error = f"GitHub asked to wait {asked.total_seconds():g} s (Retry-After): {error}"
        with self.service.ledger.begin() as conn:
            finish_failed(
                conn, lease.id, token, now=now, error=error, retry_at=now + delay, give_up=give_up
            )
        outcome = "failed" if give_up else "retry"
        self.service.metrics.revocations.labels(outcome=outcome).inc()
        event(
            log,
            "lease failed: revocation keeps failing" if give_up else "revocation attempt failed",
            level=logging.ERROR if give_up else logging.WARNING,
            lease=lease.id,
            repository=lease.repository,
            provider=lease.provider,
            attempts=lease.attempts,
            error=error,
            retry_at=(now + delay).isoformat(),
        )

    def _asked_to_wait(self, exc: Exception) -> timedelta | None:
        """What GitHub's last answer asked (`Retry-After`), once the client's own retries were
        spent: the next attempt comes no sooner. Capped at `failed_retry`, so that a wild
        value cannot park a lease for good."""
        seconds = exc.retry_after if isinstance(exc, GitHubError) else None
        if seconds is None:
            return None
        return min(timedelta(seconds=seconds), self.settings.failed_retry)

    def _describe(self, exc: Exception) -> str:
        """A short reason with every connection password (and URL password) scrubbed out."""
        known = [s for c in self.service.config.connections.values() for s in c.secrets()]
        return described(exc, known)

    def delete_environments(self, repository_id: int | None = None, name: str | None = None) -> int:
        """Delete the environments a lease said runkeys created, that no live lease uses (all of
        them, or the one named), where GitHub agrees they are runkeys' own; the others are
        marked `kept` with the reason. A failure is left for the sweeper's next pass."""
        with self.service.ledger.begin() as conn:
            candidates = deletable(conn, repository_id=repository_id, name=name)
        deleted = 0
        for env in candidates:
            store = self.service.secrets_for(env.repository)
            try:
                facts = store.environment_facts(env.name)
                kept = None if facts is None else environment_kept_because(facts, env.named_at)
                if facts is not None and kept is None:
                    store.delete_environment(env.name)
            except Exception as exc:
                self._environment_failed(env, exc)
                continue
            self._mark_environment(env, facts, kept)
            if facts is not None and kept is None:
                deleted += 1
        return deleted

    def _environment_failed(self, env: EnvironmentRecord, exc: Exception) -> None:
        event(
            log,
            "environment not deleted",
            level=logging.WARNING,
            repository=env.repository,
            environment=env.name,
            error=self._describe(exc),
        )

    def _mark_environment(
        self, env: EnvironmentRecord, facts: EnvironmentFacts | None, kept: str | None
    ) -> None:
        """Record what GitHub said and did: `kept` (with why), else `deleted` (or gone)."""
        now = self.service.clock()
        with self.service.ledger.begin() as conn:
            state = "kept" if kept is not None else "deleted"
            mark(conn, env.repository_id, env.name, state=state, now=now, note=kept)
        if kept is not None:
            event(
                log,
                "environment kept: GitHub says it is not runkeys' to delete",
                level=logging.WARNING,
                repository=env.repository,
                environment=env.name,
                reason=kept,
            )
        elif facts is not None:
            event(log, "environment deleted", repository=env.repository, environment=env.name)
