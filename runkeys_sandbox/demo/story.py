"""The demo's story, a chapter per method of `Demo`: `Stack` does the work, `Narrator` the
telling. `runkeys_sandbox.cli` has the command."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from runkeys_sandbox.demo.postgres import (
    CONNECTION,
    Postgres,
    drop_roles,
    logs_in,
    probe,
    roles_present,
    where,
)
from runkeys_sandbox.demo.report import Narrator, Row, summary_table
from runkeys_sandbox.demo.runner import StepRun
from runkeys_sandbox.demo.stack import Stack, StackError, retired_by, wait_until

ENVIRONMENT = "ci-pr-{pr}"
API_TOKEN = "API_TOKEN: {provider: random, format: token, lifetime: job, ttl: 30m}"
DATABASE_URL = (
    f"DATABASE_URL: {{provider: postgres, connection: {CONNECTION.lower()}, "
    "connection_limit: 2, lifetime: run, ttl: 1h}"
)
SESSION_SECRET = "SESSION_SECRET: {provider: random, format: base64url, lifetime: run, ttl: 1h}"


def tell(postgres_url: str, out: TextIO) -> int:
    say = Narrator(out)
    say.title("runkeys demo: the life of two CI keys, on this machine")
    server, why_not = probe(postgres_url)
    connections = {f"RUNKEYS_CONNECTION_{CONNECTION}": server.url} if server else {}
    with Stack(connections) as stack:
        say.masker = stack.job.masker
        demo = Demo(stack, server, say)
        try:
            demo.introduce(postgres_url, why_not)
            rows = demo.tell()
        except BaseException as exc:
            what = "Interrupted" if isinstance(exc, KeyboardInterrupt) else "Failed"
            say.line(f"{what}: undoing what was done so far, then stopping everything.")
            demo.clean_up_after_failure()
            raise
    demo.conclude(rows, stack.workdir)
    return 0


class Demo:
    """The story, a chapter per method: `Stack` does the work, `Narrator` the telling."""

    def __init__(self, stack: Stack, server: Postgres | None, say: Narrator) -> None:
        self.stack, self.server, self.say = stack, server, say
        self.specs = [API_TOKEN, DATABASE_URL if server else SESSION_SECRET]
        self.job_key, self.run_key = "API_TOKEN", "DATABASE_URL" if server else "SESSION_SECRET"
        self.roles: list[str] = []
        self.repo = stack.seeded.repositories[0]
        self.environment = ENVIRONMENT.format(pr=stack.pull_request)

    def inputs(self) -> dict[str, str]:
        return self.stack.action_inputs("\n".join(self.specs) + "\n", environment=ENVIRONMENT)

    def introduce(self, postgres_url: str, why_not: str) -> None:
        seeded, say = self.stack.seeded, self.say
        say.heading(f"A GitHub stand-in (the sandbox) listens at {seeded.sandbox.url}.")
        say.line(
            f"It holds the repository {self.repo.full_name}, a GitHub App (id {seeded.app.id}) "
            f"installed on it, and workflow run {self.stack.run.id} of pull request "
            f"#{self.stack.pull_request}, in progress."
        )
        if self.server:
            say.line(
                f"PostgreSQL answers at {self.server.where}: DATABASE_URL will be a real login "
                "role there, made for this run and dropped when the run is over."
            )
        else:
            say.line(
                f"No PostgreSQL to use at {where(postgres_url)} ({why_not}), so the second key "
                "is a random value, not a database role. Start PostgreSQL, or point --postgres "
                "at an account that may create roles, to see a real one."
            )
        say.heading("The runkeys service starts: gunicorn, its ledger a SQLite file.")
        service = self.stack.start_service()
        say.line(
            f"It listens at {service.url}. It believes only OIDC tokens of the sandbox's issuer "
            "and webhooks signed with the App's webhook secret."
        )

    def tell(self) -> list[Row]:
        main = self.main_step()
        rows = self.delivered(main)
        self.post_step(main)
        self.run_completes(main, rows)
        self.ledger(rows)
        return rows

    def main_step(self) -> StepRun:
        say = self.say
        say.heading("A job of that run has this step:")
        say.block(_workflow_step(self.specs))
        say.line("The runner starts the action. Its log, as the runner shows it:")
        step = self.stack.job.run(self.inputs(), on_line=say.log)
        if step.returncode != 0:
            raise StackError(f"the step failed: {' '.join(step.annotations('error'))[:500]}")
        say.line(
            f"Before anything else, the action sent {step.masks} ::add-mask:: commands: each "
            "value, each line of it, and its base64, URL-encoded and JSON forms. The runner "
            "hides them in every later line of the job's log (*** above)."
        )
        return step

    def delivered(self, main: StepRun) -> list[Row]:
        say, sandbox = self.say, self.stack.seeded.sandbox
        keys = main.issued_keys()
        names = [str(key["name"]) for key in keys]
        sealed = all(
            sandbox.secret_value(self.repo, name, self.environment) == main.env[name]
            for name in names
        )
        say.line(
            f"It registered {len(keys)} leases with the service first: the ledger knew each key "
            "before anything could use it. Then it sealed the keys into the environment "
            f"{self.environment}, which it created: {', '.join(names)}. GitHub stores them "
            "encrypted (a libsodium sealed box to the environment's key); the sandbox decrypts "
            f"them, and {'each matches' if sealed else 'they do NOT match'} what the job got."
        )
        variables = [str(v) for key in keys for v in key["variables"]]
        say.line(f"Later steps of this job see them as variables: {', '.join(variables)}.")
        rows = [
            Row(str(k["name"]), str(k["provider"]), str(k["lifetime"]), minted=True) for k in keys
        ]
        if self.server:
            dsn = main.env["DATABASE_URL"]
            self.roles = [main.env["DATABASE_URL_USER"]]
            rows[1].works_before = logs_in(dsn)
            say.line(
                "A later step connects with DATABASE_URL: "
                + ("it logs in as its own role." if rows[1].works_before else "it cannot log in!")
            )
        if not sealed:
            raise StackError("the sealed secrets do not match the job's values")
        return rows

    def post_step(self, main: StepRun) -> None:
        say, sandbox = self.say, self.stack.seeded.sandbox
        say.heading("The job ends, and the runner runs the action's post step:")
        self.stack.job.run(self.inputs(), post_of=main, on_line=say.log)
        left = sandbox.secret_names(self.repo, self.environment)
        say.line(
            f"The post step retired {self.job_key} (lifetime job) and told the service. "
            f"{self.run_key} (lifetime run) stays for the run's later jobs: the environment "
            f"now holds {', '.join(left) or 'nothing'}."
        )

    def run_completes(self, main: StepRun, rows: list[Row]) -> None:
        say, sandbox = self.say, self.stack.seeded.sandbox
        say.heading(
            "The run completes. GitHub tells the App with a `workflow_run` `completed` webhook, "
            "signed with the App's webhook secret."
        )
        answer = self.stack.complete_run()
        body: dict[str, Any] = answer.json()
        say.line(
            f"The service checked the signature and answered {answer.status_code} at once, "
            f"with {body.get('queued', 0)} lease queued for its worker."
        )

        def retired() -> bool:
            gone = self.environment not in sandbox.environment_names(self.repo)
            return gone and not (self.server and roles_present(self.server, self.roles))

        wait_until(retired, timeout=30, what=f"{self.run_key} to be retired")
        if self.server:
            rows[1].works_after = logs_in(main.env["DATABASE_URL"])
        role = "dropped its role, " if self.server else ""
        say.line(
            f"The worker retired {self.run_key}: {role}deleted its secret, then deleted the "
            f"environment {self.environment}, which runkeys had created and no key uses now."
        )

    def ledger(self, rows: list[Row]) -> None:
        leases = {lease["key_name"]: lease for lease in self.stack.leases()}
        sandbox = self.stack.seeded.sandbox
        environments = sandbox.environment_names(self.repo)
        for row in rows:
            lease = leases.get(row.key, {})
            row.retired_by = retired_by(lease) if lease.get("state") == "revoked" else "-"
            row.secret_gone = self.environment not in environments or not sandbox.secret_value(
                self.repo, row.key, self.environment
            )
        states = sorted({str(lease["state"]) for lease in leases.values()})
        self.say.heading(
            f"The ledger (`runkeys leases`) holds {len(leases)} leases, all {', '.join(states)}, "
            "each with who retired it and why; never a value, only a SHA-256 fingerprint."
        )
        self.say.table(ledger_table(list(leases.values())))

    def conclude(self, rows: list[Row], workdir: Path) -> None:
        say = self.say
        say.heading("In short:")
        say.table(summary_table(rows))
        left = roles_present(self.server, self.roles) if self.server else []
        if workdir.exists() or left:
            raise StackError(f"the demo left things behind: {workdir}, {len(left)} role(s)")
        say.line(
            f"Cleaned up: the service and the sandbox are stopped, {workdir} is removed"
            + (", and no role the demo minted is left in PostgreSQL." if self.server else ".")
        )
        say.heading("What to try next:")
        say.table(NEXT)

    def clean_up_after_failure(self) -> None:
        """Cut short: drop every role the ledger still holds live. (The action itself rolled
        back what it had not registered yet.)"""
        if self.server is None:
            return
        try:
            live = [
                str(lease["reference"])
                for lease in self.stack.leases()
                if lease["provider"] == "postgres" and lease["state"] != "revoked"
            ]
            drop_roles(self.server, [*live, *self.roles])
        except Exception as exc:  # the interruption is what gets reported
            self.say.line(f"Could not drop every role minted so far: {type(exc).__name__}")


NEXT = (
    "runkeys sandbox --keys keys.yml   # your own `keys` spec, dry-run against the stand-in",
    "runkeys sandbox                   # the stand-in alone, printing the variables to export",
    "README.md, 'Use it in a workflow' # broker mode: a workflow that holds no key at all",
    "docs/service.md                   # deploy the service: App, ledger, policy, operations",
)


def ledger_table(leases: list[dict[str, Any]]) -> list[str]:
    """The ledger's rows as `runkeys leases` keeps them: who retired each key and why."""
    header = ("LEASE", "KEY", "PROVIDER", "STATE", "RETIRED BY", "FINGERPRINT")
    rows = [
        (
            str(lease["id"])[:12],
            str(lease["key_name"]),
            str(lease["provider"]),
            str(lease["state"]),
            retired_by(lease) if lease.get("state") == "revoked" else "-",
            str(lease["fingerprint"])[:12] + "…",
        )
        for lease in sorted(leases, key=lambda lease: str(lease["key_name"]))
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in (header, *rows)
    ]


def _workflow_step(specs: list[str]) -> list[str]:
    lines = [
        "- uses: runkeys/runkeys@v1",
        "  with:",
        f"    environment: {ENVIRONMENT}",
        "    app-id: ${{ vars.RUNKEYS_APP_ID }}",
        "    private-key: ${{ secrets.RUNKEYS_APP_PRIVATE_KEY }}",
        "    service-url: <the service above>",
        "    keys: |",
        *(f"      {spec}" for spec in specs),
    ]
    if any("connection:" in spec for spec in specs):
        lines += ["  env:", f"    RUNKEYS_CONNECTION_{CONNECTION}: ${{{{ secrets.DEMO_DB_URL }}}}"]
    return lines
