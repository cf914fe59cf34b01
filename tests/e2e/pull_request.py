"""A pull request of a fresh repository in the e2e world, and its runs: jobs whose steps run the
action's console scripts with the runner's environment (tests/action/harness.py's `Step`),
GitHub's signed deliveries when a run completes or the pull request closes, and what the
sandbox, PostgreSQL and the ledger show afterwards."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

from runkeys_sandbox.server.payloads import pull_request_closed, workflow_run_completed
from runkeys_sandbox.server.state import Installation, Repository, WorkflowRun
from tests.action.harness import Run, Step
from tests.e2e.leaks import Secret
from tests.e2e.world import AUDIENCE, PERMISSIONS, Output, World
from tests.encoded_forms import encoded_forms
from tests.service.served import wait_for
from tests.services import unique

CONNECTION = "ci_db"
REASONS = {
    "job": "post-step: retired by the job",
    "run": "webhook workflow_run.completed delivery ",
    "pr": "webhook pull_request.closed delivery ",
}


@dataclass(frozen=True)
class Key:
    """A key one step minted: a `random` token or a `postgres` role, and what the job got."""

    name: str
    provider: str
    lifetime: str
    lease_id: str
    value: str = field(repr=False)
    role: str | None = None  # postgres: the role (the lease's reference; not a secret)
    password: str | None = field(default=None, repr=False)

    def carriers(self) -> dict[str, str]:
        """The job variables (and step outputs) that carry this key's secrets."""
        if self.password is None:
            return {self.name: self.value}
        return {self.name: self.value, f"{self.name}_PASSWORD": self.password}

    def secrets(self, repository: str) -> list[Secret]:
        found = [Secret(f"{self.name} of {repository}", self.value, self.carriers())]
        if self.password is not None:
            found.append(Secret(f"the password of {self.name}", self.password, self.carriers()))
        return found


@dataclass
class Issued:
    """One main step: its run, the environment it wrote to, and its keys."""

    run: Run
    environment: str
    keys: list[Key]

    def of(self, lifetime: str) -> list[Key]:
        return [key for key in self.keys if key.lifetime == lifetime]


def spec(lifetimes: Iterable[str], group: str, ttl: str) -> str:
    """A `random` token and a `postgres` role per lifetime: `RUN_TOKEN`, `RUN_DATABASE_URL`."""
    lines = []
    for lifetime in lifetimes:
        prefix = lifetime.upper()
        lines += [
            f"{prefix}_TOKEN: {{provider: random, format: token, lifetime: {lifetime}, "
            f"ttl: {ttl}}}",
            f"{prefix}_DATABASE_URL: {{provider: postgres, connection: {CONNECTION}, "
            f"grant: [{group}], connection_limit: 3, lifetime: {lifetime}, ttl: {ttl}}}",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class PullRequest:
    """A pull request of a fresh repository (the App installed on it), with a run in progress."""

    world: World
    repo: Repository
    installation: Installation
    number: int
    run: WorkflowRun
    steps: dict[int, Step] = field(default_factory=dict)  # a job per attempt
    # What each attempt's job printed, step by step: the run's logs (World.publish_logs).
    printed: dict[int, list[tuple[str, Run]]] = field(default_factory=dict)
    # Lines a test has the `e2e` job's tests step print (the log scan's): that job reads the
    # keys as secrets, so the runner masks their values in every encoding it knows of, and
    # nothing else (not a part of a key, which is no secret there).
    tests_print: list[str] = field(default_factory=list)
    secret_values: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def open(cls, world: World, name: str, number: int = 7) -> PullRequest:
        sandbox = world.sandbox
        repo = sandbox.add_repository(f"{unique('octo').replace('_', '-')}/{name}")
        installation = sandbox.install(world.app, [repo], permissions=PERMISSIONS)
        run = sandbox.add_workflow_run(
            repo, event="pull_request", head_branch=name, pull_requests=[number]
        )
        made = cls(world, repo, installation, number, run)
        made.new_job(1)
        world.opened.append(repo.full_name)
        return made

    def another_run(self) -> PullRequest:
        """A second run of the same pull request, in progress at the same time (a push while
        the first runs, with no `concurrency` group): its jobs use the same environment."""
        run = self.world.sandbox.add_workflow_run(
            self.repo,
            event="pull_request",
            head_branch=self.run.head_branch,
            pull_requests=[self.number],
        )
        made = PullRequest(self.world, self.repo, self.installation, self.number, run)
        made.new_job(1)
        return made

    @property
    def environment(self) -> str:
        return f"ci-pr-{self.number}"

    def new_job(self, attempt: int) -> Step:
        """A job of attempt `attempt`: its files, and the runner's environment for its steps."""
        sandbox, repo, run = self.world.sandbox, self.repo, self.run
        job = self.world.tmp / f"{repo.owner}-run-{run.id}-attempt-{attempt}"
        step = Step(job, repository=repo.full_name, run_id=run.id)
        step.pull_request_event(self.number)
        claims = replace(
            sandbox.run_claims(repo, run),
            run_attempt=attempt,
            ref=f"refs/pull/{self.number}/merge",
            event_name="pull_request",
        )
        step.base_env.update(
            {
                "GITHUB_API_URL": sandbox.url,
                "GITHUB_REPOSITORY_ID": str(repo.id),
                "GITHUB_RUN_ATTEMPT": str(attempt),
                "RUNKEYS_CONNECTION_CI_DB": self.world.postgres.connection_url,
                **sandbox.runner_oidc_env(claims),
            }
        )
        self.world.job_dirs.append(job)
        self.steps[attempt] = step
        return step

    def inputs(self, keys: str) -> dict[str, str]:
        assert self.world.service is not None
        return {
            "keys": keys,
            "environment": "ci-pr-{pr}",
            "app-id": str(self.world.app.id),
            "private-key": self.world.app.private_key_pem,
            "service-url": self.world.service.url,
            "audience": AUDIENCE,
        }

    def mint(self, *lifetimes: str, ttl: str = "1h", attempt: int = 1) -> Issued:
        """The main step of the attempt's job, minting a token and a role per lifetime."""
        keys = spec(lifetimes, self.world.postgres.group, ttl)
        run = self.steps[attempt].run(self.inputs(keys))
        self.world.outputs.append(Output("runkeys-action", "\n".join(run.lines), run.stderr))
        assert run.returncode == 0, run.annotations("error")
        self.printed.setdefault(attempt, []).append(("Run runkeys", run))
        issued = Issued(run, self.environment, [key_of(item, run.env) for item in run.keys_json()])
        for key in issued.keys:
            self.world.secrets += key.secrets(self.repo.full_name)
            self.secret_values.append(key.value)
        run.assert_masked_first({key.name: key.value for key in issued.keys})
        return issued

    def post(self, issued: Issued, attempt: int = 1) -> Run:
        """The job's post step: the runner hands it STATE_* and the job's environment."""
        step = self.steps[attempt]
        keys = spec(sorted({key.lifetime for key in issued.keys}), self.world.postgres.group, "1h")
        run = step.run(self.inputs(keys), post=True, extra_env=step.post_env(issued.run))
        self.world.outputs.append(Output("runkeys-action-post", "\n".join(run.lines), run.stderr))
        assert run.returncode == 0
        self.printed.setdefault(attempt, []).append(("Post Run runkeys", run))
        return run

    def complete(self, conclusion: str = "success", attempt: int | None = None) -> dict[str, Any]:
        """The attempt ends in the sandbox; GitHub delivers `workflow_run` `completed`."""
        sandbox = self.world.sandbox
        sandbox.set_run_status(self.repo, self.run.id, "completed", conclusion, attempt)
        return self.deliver_completed(attempt)

    def deliver_completed(self, attempt: int | None = None) -> dict[str, Any]:
        self.publish_logs(attempt)
        payload = workflow_run_completed(
            self.world.sandbox, self.repo, self.run.id, self.installation, attempt=attempt
        )
        return self._deliver("workflow_run", payload)

    def publish_logs(self, attempt: int | None = None) -> None:
        """Each attempt's logs as GitHub keeps them (up to `attempt`): that attempt's own steps;
        and what the test had its tests step print, in the attempt completing (the last)."""
        numbers = sorted(n for n in self.printed if attempt is None or n <= attempt)
        last = attempt if attempt is not None else (numbers[-1] if numbers else None)
        forms = sorted({f for v in self.secret_values for f in encoded_forms(v)}, key=len)[::-1]
        printed = "\n".join(self.tests_print)
        for form in forms:
            printed = printed.replace(form, "***")
        tests = [("Run tests", printed)] if self.tests_print else []
        # No attempt printed anything and none is named: the tests' print, in the latest.
        attempts: list[int | None] = [*sorted({*numbers, *([] if last is None else [last])})]
        for number in attempts or [None]:
            printed_by = self.printed.get(number, []) if number is not None else []
            steps = [(f"{name} (attempt {number})", run) for name, run in printed_by]
            here = tests if number == last else []
            if steps or here:
                self.world.publish_logs(self.repo, self.run.id, steps, here, run_attempt=number)

    def close(self) -> dict[str, Any]:
        payload = pull_request_closed(self.world.sandbox, self.repo, self.number, self.installation)
        return self._deliver("pull_request", payload)

    def _deliver(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert self.world.service is not None
        url = f"{self.world.service.url}/webhook"
        answer = self.world.sandbox.deliver(url, event, payload, app=self.world.app)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    # -- what the world shows -----------------------------------------------------------------

    def environment_exists(self) -> bool:
        return self.environment in self.world.sandbox.environment_names(self.repo)

    def secret(self, name: str) -> str | None:
        if not self.environment_exists():
            return None
        return self.world.sandbox.secret_value(self.repo, name, self.environment)

    def assert_alive(self, keys: Iterable[Key]) -> None:
        """Sealed in the environment (the sandbox decrypts them), and each role logs in."""
        members = self.world.postgres.members()
        for key in keys:
            assert self.secret(key.name) == key.value, key.name
            if key.role is not None:
                assert logs_in(key), key.name
                assert key.role in members  # granted the group, as the spec says

    def assert_retired(self, keys: Iterable[Key]) -> None:
        """Each role cannot log in and is gone from pg_roles; each secret is gone."""
        keys = list(keys)
        postgres = self.world.postgres
        wait_for(
            lambda: all(
                self.secret(key.name) is None
                and (key.role is None or not postgres.role_exists(key.role))
                for key in keys
            ),
            what="retirement",
        )
        members = postgres.members()
        for key in keys:
            if key.role is not None:
                assert not logs_in(key), key.name
                assert key.role not in members

    def assert_ledger(
        self,
        issued: Issued,
        reasons: Mapping[str, str] = REASONS,
        *,
        leases: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """`runkeys leases --json` (or what it printed before): each lease revoked, and retired
        by whom and why (`reasons`, by lifetime: the start of the ledger's reason)."""
        if leases is None:
            leases = self.world.leases(self.repo.full_name)
        for key in issued.keys:
            lease = leases[key.lease_id]
            assert lease["state"] == "revoked", lease
            assert lease["retire_reason"].startswith(reasons[key.lifetime]), lease
            assert lease["retired_at"] is not None
            assert lease["reference"] == (key.role or lease["reference"])


def key_of(item: dict[str, Any], env: dict[str, str]) -> Key:
    name = str(item["name"])
    return Key(
        name=name,
        provider=str(item["provider"]),
        lifetime=str(item["lifetime"]),
        lease_id=str(item["lease_id"]),
        value=env[name],
        role=env.get(f"{name}_USER"),
        password=env.get(f"{name}_PASSWORD"),
    )


def logs_in(key: Key) -> bool:
    """A real login with the minted DSN: True if it works (as that role); False if refused
    because the role does not exist."""
    try:
        with psycopg.connect(key.value, connect_timeout=5) as conn:
            row = conn.execute("SELECT current_user").fetchone()
    except psycopg.OperationalError as exc:
        refusal = str(exc)
    else:
        assert row == (key.role,)
        return True
    assert "does not exist" in refusal, refusal
    return False
