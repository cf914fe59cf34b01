"""The world the end-to-end tests run in, everything as it runs for real: the sandbox GitHub with
the App, PostgreSQL with a least-privileged admin role for the `postgres` provider, and the
service under gunicorn (`runkeys serve`) on a SQLite or PostgreSQL ledger. Everything every
process printed or wrote is kept for the leak scan (`World.scan`)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.engine import make_url

from handler.config import ServiceConfig
from handler.ledger import Ledger, tables
from handler.service import Service
from handler.sweeper import Sweeper
from runkeys_sandbox.server.sandbox import Sandbox
from runkeys_sandbox.server.state import App, Repository
from tests.action.harness import Run
from tests.e2e.leaks import Scanner, Secret
from tests.service.served import Served, wait_for
from tests.services import need, unique

AUDIENCE = "https://runkeys.e2e.example/service"
# What the App asks for, as a user installs it: the e2e installations have exactly that.
MANIFEST = json.loads((Path(__file__).resolve().parents[2] / "app-manifest.json").read_text())
PERMISSIONS: dict[str, str] = MANIFEST["default_permissions"]


@dataclass
class Postgres:
    """A group role the minted roles join, and the provider's admin: CREATEROLE plus ADMIN
    OPTION on the group, nothing more (docs/providers.md)."""

    admin_url: str = field(repr=False)
    group: str
    account: str
    password: str = field(repr=False)

    @classmethod
    @contextmanager
    def prepared(cls) -> Iterator[Postgres]:
        admin_url = need("postgres")
        base = unique("rk_e2e")
        made = cls(admin_url, f"{base}_rw", f"{base}_adm", secrets.token_urlsafe(18))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(made.group)))
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                    sql.Identifier(made.account), sql.Literal(made.password)
                )
            )
            conn.execute(
                sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(
                    sql.Identifier(made.group), sql.Identifier(made.account)
                )
            )
        try:
            yield made
        finally:
            made.drop()

    @property
    def connection_url(self) -> str:
        url = make_url(self.admin_url).set(username=self.account, password=self.password)
        return url.render_as_string(hide_password=False) + "?sslmode=disable"

    def members(self) -> list[str]:
        """Roles in the group besides the admin: the minted ones still alive."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT r.rolname FROM pg_roles r JOIN pg_auth_members m ON m.member = r.oid"
                " JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname = %s AND r.rolname <> %s",
                (self.group, self.account),
            ).fetchall()
        return sorted(str(name) for (name,) in rows)

    def role_exists(self, role: str) -> bool:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        return row is not None

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for role in [*self.members(), self.account, self.group]:
                name = sql.Identifier(role)
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(name))
                    conn.execute(sql.SQL("DROP ROLE {}").format(name))


@contextmanager
def ledger_database(engine: str, tmp: Path) -> Iterator[str]:
    """The ledger: a SQLite file, or a new PostgreSQL database (dropped afterwards)."""
    if engine == "sqlite":
        yield f"sqlite:///{tmp / 'ledger.sqlite3'}"
        return
    admin = need("postgres")
    name = unique("rk_e2e_ledger")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@dataclass
class Output:
    """What one process printed."""

    what: str
    stdout: str
    stderr: str


@dataclass
class World:
    engine: str
    tmp: Path
    sandbox: Sandbox
    app: App
    postgres: Postgres
    ledger_url: str
    service: Served | None = None
    outputs: list[Output] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)
    job_dirs: list[Path] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)  # repositories of the tests' pull requests
    planted: set[int] = field(default_factory=set)  # runs whose logs a test put a key in

    def service_environ(self, **more: str) -> dict[str, str]:
        return {
            "RUNKEYS_WEBHOOK_SECRET": self.app.webhook_secret,
            "RUNKEYS_APP_ID": str(self.app.id),
            "RUNKEYS_PRIVATE_KEY": self.app.private_key_pem,
            "RUNKEYS_DATABASE_URL": self.ledger_url,
            "RUNKEYS_OIDC_ISSUER": self.sandbox.oidc_issuer_url,
            "RUNKEYS_OIDC_AUDIENCE": AUDIENCE,
            "GITHUB_API_URL": self.sandbox.url,
            "RUNKEYS_WORKER": "embedded",
            "RUNKEYS_WORKER_POLL_INTERVAL": "0.1",
            # Only the tests' own `runkeys sweep` sweeps (the embedded sweeper once, at start):
            # which path retired a key must not depend on timing.
            "RUNKEYS_SWEEP_INTERVAL": "1h",
            "RUNKEYS_CONNECTION_CI_DB": self.postgres.connection_url,
            "RUNKEYS_LOG_LEVEL": "DEBUG",  # the most a service ever logs: scanned for values
            # Every run's logs are scanned; a clean run's are kept (World.assert_log_scans).
            "RUNKEYS_DELETE_LEAKED_LOGS": "true",
            **more,
        }

    def command(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """`runkeys ARGS` as an operator runs it against the service's ledger."""
        done = subprocess.run(
            [sys.executable, "-m", "runkeys.cli", *args],
            env={**os.environ, **self.service_environ(), **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.outputs.append(Output(f"runkeys {' '.join(args)}", done.stdout, done.stderr))
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    def sweep(self) -> dict[str, Any]:
        done = self.command("sweep", RUNKEYS_RECONCILE_INTERVAL="0.5")
        report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return report

    def sweep_at(self, moment: datetime) -> dict[str, Any]:
        """One sweep, and the revocations it queues, in this process on a clock stopped at
        `moment`: a TTL runs out without waiting for it. (The served worker, on the real clock,
        sees what this queues as due only at `moment`; so the drain here does it.)"""
        environ = self.service_environ(RUNKEYS_RECONCILE_INTERVAL="0.5")
        service = Service(ServiceConfig.for_worker(environ), clock=lambda: moment)
        try:
            sweeper = Sweeper(service)
            report = sweeper.sweep()
            sweeper.worker.drain()
        finally:
            service.close()
        return asdict(report)

    def leases(self, repository: str | None = None) -> dict[str, dict[str, Any]]:
        """`runkeys leases --json` (for one repository), by lease id."""
        which = ["--repository", repository] if repository else ["--limit", "100000"]
        done = self.command("leases", "--json", *which)
        rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        return {row["id"]: row for row in rows}

    def history(self, lease_id: str) -> list[tuple[str, str]]:
        done = self.command("leases", "--json", "--lease", lease_id)
        row = json.loads(done.stdout)
        return [(event["actor"], event["action"]) for event in row["events"]]

    def ledger_dump(self) -> bytes:
        """The ledger's bytes: the SQLite files as on disk, or every PostgreSQL table."""
        if self.engine == "sqlite":
            path = Path(make_url(self.ledger_url).database or "")
            files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
            return b"".join(f.read_bytes() for f in files if f.exists())
        dump = b""
        with psycopg.connect(self.ledger_url, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            ).fetchall()
            assert {"leases", "lease_events"} <= {str(t) for (t,) in tables}
            for (table,) in tables:
                query = sql.SQL("COPY {} TO STDOUT").format(sql.Identifier(table))
                with conn.cursor().copy(query) as copy:
                    dump += b"".join(bytes(chunk) for chunk in copy)
        return dump

    def publish_logs(
        self,
        repo: Repository,
        run_id: int,
        steps: list[tuple[str, Run]],
        tests: list[tuple[str, str]] | None = None,
        run_attempt: int | None = None,
    ) -> None:
        """The logs of a run attempt (default: the latest) in the stand-in, as GitHub keeps
        them: job `keys`, what its steps
        printed (masked as the runner masks), and job `e2e`, what `tests` says its steps
        printed (the caller masks). The service's log scan reads every e2e run's."""
        jobs = {"keys": [(name, run.logged()) for name, run in steps]}
        if tests:
            jobs["e2e"] = list(tests)
        self.sandbox.set_run_logs(repo, run_id, jobs, run_attempt)

    def log_scans(self) -> list[dict[str, Any]]:
        """The ledger's log scans, one dict per run attempt."""
        ledger = Ledger.open(self.ledger_url, migrate_schema=False)
        try:
            with ledger.begin() as conn:
                return [dict(row) for row in conn.execute(select(tables.log_scans)).mappings()]
        finally:
            ledger.close()

    def assert_log_scans(self) -> None:
        """Every run's logs were scanned, and found clean but where a test planted a key."""

        def finished() -> bool:
            return all(scan["state"] != "queued" for scan in self.log_scans())

        wait_for(finished, what="the log scans")
        scans = self.log_scans()
        for scan in scans:
            assert scan["state"] == "done", scan
            if scan["run_id"] not in self.planted:
                assert scan["findings"] == 0, scan  # false positives: none
        print(f"{len(scans)} runs' logs scanned: no finding but the {len(self.planted)} planted")

    def scan(self) -> Scanner:
        """Every byte so far against every value so far; asserts that none leaked."""
        scanner = Scanner(self.secrets)
        problems: list[str] = []
        for output in self.outputs:
            action = output.what.startswith("runkeys-action")  # only it may send masks
            problems += scanner.text(f"{output.what} stdout", output.stdout, masks_allowed=action)
            problems += scanner.text(f"{output.what} stderr", output.stderr)
        for job in self.job_dirs:
            for path in sorted(p for p in job.rglob("*") if p.is_file()):  # HOME too
                if path.name in ("github_env", "github_output"):
                    problems += scanner.job_file(str(path), path.read_text())
                else:
                    problems += scanner.text(str(path), path.read_text())
        if self.service is not None:
            problems += scanner.text("the service's log", self.service.log.read_text())
        problems += scanner.data(f"the {self.engine} ledger", self.ledger_dump())
        recorded = json.dumps([r.__dict__ for r in self.sandbox.requests], default=str)
        problems += scanner.text("the sandbox's request log", recorded)
        assert not problems, "values leaked:\n" + "\n".join(problems)
        assert self.secrets, "nothing was minted, so nothing was scanned for"
        print(f"scanned {scanner.places} places for {len(scanner.forms)} forms of "
              f"{len(self.secrets)} values: none leaked")  # fmt: skip
        return scanner
