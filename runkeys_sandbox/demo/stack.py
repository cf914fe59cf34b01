"""Everything a key's life needs, on this machine, for the demo and `runkeys sandbox --keys`:
the GitHub stand-in (seeded: a repository, the App installed on it, a pull request's run in
progress), the runkeys service (`runkeys serve`, gunicorn, its ledger a SQLite file), and the
job whose steps run the action. All of it lives in one temporary directory and goes away on
exit — normal, failed or interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests

from runkeys.errors import RunkeysError
from runkeys_sandbox import launch
from runkeys_sandbox.demo.runner import Job, runner_environment
from runkeys_sandbox.launch import LaunchError, ServerProcess, free_port, runkeys_serve, started
from runkeys_sandbox.server.payloads import pull_request_closed, workflow_run_completed
from runkeys_sandbox.server.seeded import Seeded, start_seeded
from runkeys_sandbox.server.state import WorkflowRun

HEAD_BRANCH = "add-login-tests"


class StackError(RunkeysError):
    title = "The local stack failed"


def _clean_environ() -> dict[str, str]:
    """This process's environment without settings that would point a child elsewhere."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RUNKEYS_", "GITHUB_", "ACTIONS_", "INPUT_", "STATE_"))
        and k != "PROMETHEUS_MULTIPROC_DIR"
    }


class Stack:
    """`with Stack(connections) as stack:` — the sandbox, the service, and a pull request's
    run with one job. `connections`: `RUNKEYS_CONNECTION_<NAME>` settings for the action and
    the service alike."""

    def __init__(
        self, connections: Mapping[str, str] | None = None, *, pull_request: int = 7
    ) -> None:
        self.connections = dict(connections or {})
        self.pull_request = pull_request
        self._tmp: str | None = None
        self._seeded: Seeded | None = None
        self._service: ServerProcess | None = None
        self._job: Job | None = None
        self._run: WorkflowRun | None = None

    # -- what a started stack offers ------------------------------------------------------------
    # Repeated on purpose: one typed property per part, each a line through started().

    @property
    def workdir(self) -> Path:
        return Path(started(self._tmp, "the stack"))

    @property
    def seeded(self) -> Seeded:
        return started(self._seeded, "the stack")

    @property
    def service(self) -> ServerProcess:
        return started(self._service, "the service")

    @property
    def job(self) -> Job:
        return started(self._job, "the stack")

    @property
    def run(self) -> WorkflowRun:
        return started(self._run, "the stack")

    @property
    def ledger_url(self) -> str:
        return f"sqlite:///{self.workdir / 'ledger.sqlite3'}"

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        self._tmp = tempfile.mkdtemp(prefix="runkeys-demo-")
        try:
            self.start_sandbox()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start_sandbox(self) -> None:
        self._seeded = start_seeded(self.workdir)
        sandbox, repo = self.seeded.sandbox, self.seeded.repositories[0]
        self._run = sandbox.add_workflow_run(
            repo, event="pull_request", head_branch=HEAD_BRANCH, pull_requests=[self.pull_request]
        )
        self._job = self._new_job()

    def start_service(self) -> ServerProcess:
        seeded = self.seeded
        env = seeded.environment()
        settings = {
            "RUNKEYS_DATABASE_URL": self.ledger_url,
            "RUNKEYS_WEBHOOK_SECRET": seeded.app.webhook_secret,
            "RUNKEYS_APP_ID": str(seeded.app.id),
            "RUNKEYS_PRIVATE_KEY_FILE": str(seeded.private_key_file),
            "RUNKEYS_OIDC_ISSUER": env["RUNKEYS_OIDC_ISSUER"],
            "GITHUB_API_URL": seeded.sandbox.url,
            "RUNKEYS_WORKER": "embedded",
            "RUNKEYS_WORKER_POLL_INTERVAL": "0.2",
            **self.connections,
        }
        port = free_port()
        env = {**_clean_environ(), **settings, "RUNKEYS_OIDC_AUDIENCE": f"http://127.0.0.1:{port}"}
        try:
            self._service = runkeys_serve(
                env, self.workdir / "service.log", port=port, workers=1, threads=4, metrics=False
            )
        except LaunchError as exc:
            raise StackError(str(exc)) from None
        return self._service

    def _new_job(self) -> Job:
        sandbox, repo, run = self.seeded.sandbox, self.seeded.repositories[0], self.run
        claims = replace(
            sandbox.run_claims(repo, run),
            ref=f"refs/pull/{self.pull_request}/merge",
            event_name="pull_request",
            extra={"head_ref": HEAD_BRANCH, "base_ref": repo.default_branch},
        )
        env = runner_environment(
            repository=repo.full_name,
            repository_id=repo.id,
            run_id=run.id,
            run_attempt=run.latest.number,
            run_number=run.run_number,
            api_url=sandbox.url,
            oidc=sandbox.runner_oidc_env(claims),
            event_path=self.workdir / "event.json",
            pull_request=self.pull_request,
        )
        env.update(self.connections)
        return Job(self.workdir / "job", {**_clean_environ(), **env})

    def close(self) -> None:
        """Stop everything and remove the directory; safe to call twice."""
        try:
            if self._service is not None:
                self._service.stop()
        finally:
            try:
                if self._seeded is not None:
                    self._seeded.sandbox.stop()
            finally:
                if self._tmp is not None:
                    shutil.rmtree(self._tmp, ignore_errors=True)

    # -- the action's inputs, GitHub's deliveries, the ledger ---------------------------------

    def action_inputs(self, keys: str, **more: str) -> dict[str, str]:
        app = self.seeded.app
        return {
            "keys": keys,
            "app-id": str(app.id),
            "private-key": app.private_key_pem,
            "service-url": self.service.url,
            **more,
        }

    def complete_run(self, conclusion: str = "success") -> requests.Response:
        """The run ends; GitHub delivers `workflow_run` `completed`, signed."""
        sandbox, repo = self.seeded.sandbox, self.seeded.repositories[0]
        sandbox.set_run_status(repo, self.run.id, "completed", conclusion)
        payload = workflow_run_completed(sandbox, repo, self.run.id, self.seeded.installations[0])
        return sandbox.deliver(
            f"{self.service.url}/webhook", "workflow_run", payload, app=self.seeded.app
        )

    def close_pull_request(self) -> requests.Response:
        sandbox, repo = self.seeded.sandbox, self.seeded.repositories[0]
        payload = pull_request_closed(
            sandbox, repo, self.pull_request, self.seeded.installations[0]
        )
        return sandbox.deliver(
            f"{self.service.url}/webhook", "pull_request", payload, app=self.seeded.app
        )

    def leases(self) -> list[dict[str, Any]]:
        """The ledger, as `runkeys leases --json` prints it."""
        env = {**_clean_environ(), "RUNKEYS_DATABASE_URL": self.ledger_url}
        done = subprocess.run(
            [sys.executable, "-m", "runkeys.cli", "leases", "--json", "--limit", "1000"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"runkeys leases failed: {done.stderr.strip()[-500:]}")
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    try:
        launch.wait_until(check, timeout=timeout, what=what)
    except TimeoutError as exc:
        raise StackError(str(exc)) from None


def retired_by(lease: Mapping[str, Any]) -> str:
    """Who retired a lease, from the ledger's reason: `post step`, `webhook
    workflow_run.completed`, `sweeper (ttl)`, …"""
    reason = str(lease.get("retire_reason") or "")
    if reason.startswith("post-step"):
        return "post step"
    if reason.startswith("webhook "):
        return " ".join(reason.split()[:2])
    if reason.startswith("sweeper: "):
        detail = reason.removeprefix("sweeper: ")
        return "sweeper (ttl)" if detail == "ttl" else "sweeper (run completed)"
    return reason[:40] or "-"
