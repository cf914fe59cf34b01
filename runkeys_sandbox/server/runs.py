"""Workflow runs a test sets up and moves along (queued → in_progress → completed, re-runs as
new attempts of the same run id), and the OIDC claims of a job of such a run."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runkeys_sandbox.server.oidc import RunClaims
from runkeys_sandbox.server.state import (
    Clock,
    Repository,
    RunAttempt,
    RunLogs,
    WorkflowRun,
    World,
)

STATUSES = ("requested", "queued", "pending", "waiting", "in_progress", "completed")
CONCLUSIONS = (
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "skipped",
    "stale",
    "success",
    "timed_out",
    "startup_failure",
)


def _check_state(status: str, conclusion: str | None) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    if status == "completed" and conclusion not in CONCLUSIONS:
        raise ValueError(f"a completed run needs a conclusion ({', '.join(CONCLUSIONS)})")
    if status != "completed" and conclusion is not None:
        raise ValueError("only a completed run has a conclusion")


class RunBook:
    """The workflow-run part of `Sandbox`."""

    world: World
    clock: Clock

    def _repo(self, repo: Repository | str) -> Repository:
        raise NotImplementedError

    def add_workflow_run(  # noqa: PLR0917 (the positional order tests already use)
        self,
        repo: Repository | str,
        run_id: int | None = None,
        run_attempt: int = 1,
        status: str = "in_progress",
        conclusion: str | None = None,
        event: str = "push",
        head_branch: str = "main",
        head_sha: str | None = None,
        pull_requests: Iterable[int] = (),
        *,
        name: str = "CI",
        actor: str = "octocat",
    ) -> WorkflowRun:
        """A run in the state given; earlier attempts (if `run_attempt` > 1) ended in failure."""
        _check_state(status, conclusion)
        if run_attempt < 1:
            raise ValueError("run_attempt starts at 1")
        with self.world.lock:
            repository = self._repo(repo)
            ident = run_id if run_id is not None else self.world.next_id("run")
            if ident in repository.runs:
                raise ValueError(f"run {ident} exists already in {repository.full_name}")
            now = self.clock()
            attempts = {
                n: RunAttempt(n, "completed", "failure", now, now) for n in range(1, run_attempt)
            }
            attempts[run_attempt] = RunAttempt(run_attempt, status, conclusion, now, now)
            run = WorkflowRun(
                id=ident,
                run_number=len(repository.runs) + 1,
                event=event,
                head_branch=head_branch,
                head_sha=head_sha
                or hashlib.sha1(f"{ident}".encode(), usedforsecurity=False).hexdigest(),
                pull_requests=[int(n) for n in pull_requests],
                workflow_id=self.world.next_id("workflow"),
                attempts=attempts,
                name=name,
                actor=actor,
            )
            repository.runs[ident] = run
            return run

    def set_run_status(
        self,
        repo: Repository | str,
        run_id: int,
        status: str,
        conclusion: str | None = None,
        run_attempt: int | None = None,
    ) -> None:
        """Move a run on; a `run_attempt` above the latest is a re-run (a new attempt)."""
        _check_state(status, conclusion)
        with self.world.lock:
            run = self._repo(repo).runs[run_id]
            number = run_attempt or run.latest.number
            now = self.clock()
            attempt = run.attempts.get(number)
            if attempt is None:
                if number != run.latest.number + 1:
                    raise ValueError(f"the next attempt of run {run_id} is {run.latest.number + 1}")
                run.attempts[number] = RunAttempt(number, status, conclusion, now, now)
                return
            attempt.status, attempt.conclusion, attempt.updated_at = status, conclusion, now

    def set_run_logs(
        self,
        repo: Repository | str,
        run_id: int,
        jobs: Mapping[str, Sequence[tuple[str, str]]],
        run_attempt: int | None = None,
    ) -> None:
        """What the jobs of a run's attempt (the latest when None) printed, job → [(step name,
        text)], in order: the logs GitHub serves for that attempt from now on (replacing any,
        deleted or not)."""
        checked: dict[str, list[tuple[str, str]]] = {}
        for job, steps in jobs.items():
            if not job or not all(step and isinstance(text, str) for step, text in steps):
                raise ValueError("each job needs a name, and each step a name and a text")
            checked[job] = [(step, text) for step, text in steps]
        with self.world.lock:
            run = self._repo(repo).runs[run_id]
            number = run.latest.number if run_attempt is None else run_attempt
            if number not in run.attempts:
                raise ValueError(f"run {run_id} has no attempt {number}")
            run.logs[number] = RunLogs(checked, self.clock())

    def run_claims(
        self,
        repo: Repository | str,
        run: WorkflowRun | int,
        *,
        environment: str | None = None,
        **fields: Any,
    ) -> RunClaims:
        """The OIDC claims of a job of `run` (optionally in `environment`)."""
        with self.world.lock:
            repository = self._repo(repo)
            found = repository.runs[run] if isinstance(run, int) else run
            return RunClaims(
                repository=repository.full_name,
                repository_id=repository.id,
                run_id=found.id,
                run_attempt=found.latest.number,
                run_number=found.run_number,
                ref=f"refs/heads/{found.head_branch}",
                sha=found.head_sha,
                environment=environment,
                event_name=found.event,
                actor=found.actor,
                repository_owner_id=repository.account.id,
                workflow=found.name,
                **fields,
            )
