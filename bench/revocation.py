"""Revocation latency: from a `workflow_run` `completed` delivery to every lease of a 10-key run
retired by the embedded worker under `runkeys serve`, against the same 10 retirements done
directly and serially (the floor, measured in the same run).

    .venv/bin/python -m bench.revocation [--quick] [--runs N]

Everything is real: the sandbox GitHub over HTTP, `deploy-key` keys, leases registered with the
job's OIDC token. Method: docs/benchmarks.md#method."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, select

from bench.common import (
    AUDIENCE,
    WEBHOOK_SECRET,
    parser,
    run_benchmark,
    service_environ,
)
from bench.payloads import RunDeliveries, run_deliveries
from bench.report import Result, Summary, Target, percentile
from bench.servers import serve_service
from handler.config import WorkerSettings
from handler.ledger import tables
from runkeys.github.secrets import SecretStore, WriteBudget
from runkeys.github.session import AppCredentials, GitHubConfig, GitHubSession
from runkeys.issuance import Collaborators, Issued, SecretScope, issue
from runkeys.lease_client import LeaseClient
from runkeys.leases import LeaseRequest, LeaseState
from runkeys.providers import ProviderDeps, Registry
from runkeys.retire import RetireRequest, retire
from runkeys.spec import KeySpec, SpecRules, parse_keys
from runkeys_sandbox.launch import ServerProcess
from runkeys_sandbox.server.sandbox import Sandbox
from runkeys_sandbox.server.state import App, Repository
from runkeys_sandbox.server.webhooks import delivery_headers, new_delivery_id

KEYS = 10
TARGET_P99_S = 1.0
UNPACED = 1_000_000  # writes a minute: see the note on the write budget
# How often the ledger is looked at for the end of a run. Times come from the ledger's own
# stamps, not from this; looking more often would take the sandbox's CPU (same process).
POLL = 0.025


class QuietJob:
    """The job as issuance sees it, for keys nobody uses: nothing is printed or delivered."""

    def mask(self, form: str) -> None: ...

    def progress(self, message: str) -> None: ...

    def warning(self, message: str) -> None:
        print(f"   warning: {message}", file=sys.stderr)

    def remember(self, leases: Sequence[LeaseRequest], created_environment: str | None) -> None: ...

    def deliver(self, variables: Any, keys: Any) -> None: ...

    def withdraw(self) -> None: ...


@dataclass
class World:
    """The sandbox, its App and repository, and a step-side GitHub session (warm)."""

    sandbox: Sandbox
    app: App
    repo: Repository
    session: GitHubSession
    registry: Registry
    specs: tuple[KeySpec, ...]
    deliveries: RunDeliveries

    @classmethod
    def start(cls) -> World:
        sandbox = Sandbox().start()
        # A thousand runs' worth of calls from one installation token: more than GitHub's
        # 5,000 an hour, which is not what this measures.
        sandbox.rate_limits.update(installation=10**9, app=10**9)
        app = sandbox.add_app(webhook_secret=WEBHOOK_SECRET)
        repo = sandbox.add_repository("octo-org/app")
        installation = sandbox.install(app, [repo])
        config = GitHubConfig(
            api_url=sandbox.url, app=AppCredentials(str(app.id), app.private_key_pem)
        )
        session = GitHubSession(config)
        spec = "\n".join(
            f"KEY_{i}: {{provider: deploy-key, repository: {repo.full_name}, ttl: 1h}}"
            for i in range(KEYS)
        )
        return cls(
            sandbox=sandbox,
            app=app,
            repo=repo,
            session=session,
            registry=Registry(ProviderDeps(github=session)),
            specs=parse_keys(spec, SpecRules()),
            deliveries=run_deliveries(
                repo.full_name, repository_id=repo.id, installation_id=installation.id
            ),
        )

    def store(self) -> SecretStore:
        return SecretStore(self.session, self.repo.full_name, budget=WriteBudget(limit=UNPACED))

    def issue_run(self, environment: str, leases: LeaseClient | None) -> tuple[Issued, SecretStore]:
        """The action's issuance, in this process: mint, register, create the environment,
        write the secrets."""
        store = self.store()
        deps = Collaborators(
            registry=self.registry, connections={}, job=QuietJob(), secrets=store, leases=leases
        )
        return issue(self.specs, SecretScope(self.repo.full_name, environment), deps), store


@dataclass
class Timing:
    total: float  # delivery sent → the last lease revoked
    queued: float  # → the leases queued (the webhook's transaction)
    first: float  # queued → the first lease revoked
    environment: float  # the last lease revoked → the environment deleted


@dataclass
class Ledgered:
    """The ledger as the benchmark reads it: no write lock taken, so the worker is not held."""

    url: str
    engine: Any = field(init=False)

    def __post_init__(self) -> None:
        self.engine = create_engine(self.url)

    def run_state(self, run_id: int) -> tuple[list[Any], Any]:
        leases, envs = tables.leases, tables.environments
        with self.engine.connect() as conn:
            rows = list(
                conn.execute(
                    select(leases.c.state, leases.c.retire_requested_at, leases.c.retired_at).where(
                        leases.c.run_id == run_id
                    )
                )
            )
            env = conn.execute(
                select(envs.c.state, envs.c.deleted_at).where(envs.c.name == f"ci-run-{run_id}")
            ).first()
        return rows, env


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(POLL)


def service_run(
    world: World, server: ServerProcess, ledger: Ledgered, http: requests.Session
) -> Timing:
    sb, repo = world.sandbox, world.repo
    run = sb.add_workflow_run(repo)
    claims = sb.run_claims(repo, run)
    client = LeaseClient(server.url, lambda: sb.oidc_token(claims, AUDIENCE))
    issued, _ = world.issue_run(f"ci-run-{run.id}", client)
    key_ids = {k.lease.reference for k in issued.keys}
    sb.set_run_status(repo, run.id, "completed", "success")
    body, _ = world.deliveries.signed(run.id, WEBHOOK_SECRET)
    headers = delivery_headers(
        "workflow_run",
        body,
        secret=WEBHOOK_SECRET,
        delivery_id=new_delivery_id(),
        app_id=world.app.id,
    )
    sent = time.time()
    answer = http.post(f"{server.url}/webhook", data=body, headers=headers, timeout=10)
    if answer.json().get("queued") != KEYS:
        raise RuntimeError(f"the delivery queued {answer.text}")
    state: dict[str, Any] = {}

    def retired() -> bool:
        rows, env = ledger.run_state(run.id)
        state.update(rows=rows, env=env)
        done = all(r.state == LeaseState.REVOKED.value for r in rows)
        return done and env is not None and env.state == "deleted"

    _wait(retired, 30, f"run {run.id} retired")
    rows, env = state["rows"], state["env"]
    _check_gone(world, repo, run.id, key_ids)
    stamps = sorted(_epoch(r.retired_at) for r in rows)
    queued = _epoch(rows[0].retire_requested_at)
    return Timing(
        stamps[-1] - sent, queued - sent, stamps[0] - queued, _epoch(env.deleted_at) - stamps[-1]
    )


def _check_gone(world: World, repo: Repository, run_id: int, references: set[str]) -> None:
    """At the sandbox: no deploy key of the run is left, and its environment is gone."""
    left = {f"{repo.full_name}:{k['id']}" for k in world.sandbox.deploy_keys(repo)} & references
    if left or f"ci-run-{run_id}" in world.sandbox.environment_names(repo):
        raise RuntimeError(f"run {run_id}: {len(left)} deploy keys or its environment left")


def floor_run(world: World, n: int) -> float:
    """The same 10 retirements, done here one after the other: no service, no ledger."""
    environment = f"ci-floor-{n}"
    issued, store = world.issue_run(environment, None)
    started = time.perf_counter()
    for key in issued.keys:
        lease = key.lease
        retire(
            RetireRequest(lease.provider, lease.reference, lease.params, secret=lease.secret),
            registry=world.registry,
            connections={},
            secrets_for=lambda _repository: store,
        )
    elapsed = time.perf_counter() - started
    store.delete_environment(environment)
    return elapsed


def _epoch(value: datetime) -> float:
    return value.timestamp()


@dataclass(frozen=True)
class Settings:
    runs: int = 100
    warmup: int = 5


def run(s: Settings, tmp: Path) -> Result:
    world = World.start()
    database = f"sqlite:///{tmp / 'ledger.sqlite3'}"
    environ = service_environ(
        database,
        github_url=world.sandbox.url,
        app_id=world.app.id,
        private_key=world.app.private_key_pem,
        oidc_issuer=world.sandbox.oidc_issuer_url,
        extra={"RUNKEYS_GITHUB_WRITES_PER_MINUTE": str(UNPACED)},
    )
    server = serve_service(environ, tmp / "service.log")
    ledger = Ledgered(database)
    http = requests.Session()
    timings: list[Timing] = []
    floors: list[float] = []
    try:
        for n in range(s.warmup + s.runs):  # interleaved: a busy moment hits both
            timing, floor = service_run(world, server, ledger, http), floor_run(world, n)
            if n >= s.warmup:
                timings.append(timing)
                floors.append(floor)
    finally:
        server.stop()
        world.sandbox.stop()
    return _result(s, timings, floors)


def _ms(values: Sequence[float], q: float) -> float:
    return percentile(values, q) * 1000


def _result(s: Settings, timings: list[Timing], floors: list[float]) -> Result:
    totals = [t.total for t in timings]
    rows: list[dict[str, Any]] = []
    for name, values in (
        ("runkeys: delivery → 10 leases retired", totals),
        ("floor: 10 revokes + secret deletions, serially, direct", floors),
        ("↳ of which: delivery → leases queued", [t.queued for t in timings]),
        ("↳ of which: queued → first lease retired", [t.first for t in timings]),
        ("↳ after: last lease → environment deleted", [t.environment for t in timings]),
    ):
        rows.append(
            {
                "what": name,
                "p50": _ms(values, 50),
                "p99": _ms(values, 99),
                "max": max(values) * 1000,
            }
        )
    ratio50 = percentile(totals, 50) / percentile(floors, 50)
    ratio99 = percentile(totals, 99) / percentile(floors, 99)
    floor = rows[1]
    for row in rows[:2]:
        row["ratio"] = f"{row['p50'] / floor['p50']:.2f} / {row['p99'] / floor['p99']:.2f}"
    p99 = percentile(totals, 99)
    settings = WorkerSettings()
    worker = {
        "poll_interval_s": settings.poll_interval,
        "batch_size": settings.batch_size,
        "claim_timeout": str(settings.claim_timeout),
        "sweep_interval": str(settings.sweep_interval),
        "github_writes_per_minute": f"{UNPACED} (default 80: see notes)",
    }
    return Result(
        name="revocation",
        title=f"Revocation latency: workflow_run completed → {KEYS} leases retired",
        method=f"{s.runs} runs of {KEYS} `deploy-key` keys in environment secrets, after "
        f"{s.warmup} warm-up runs; each measured from the moment the delivery is sent to "
        "the last lease's `retired_at` in the ledger (provider revoke and secret deletion "
        "done at the sandbox).",
        columns=[
            ("what", "what"),
            ("p50", "p50 ms"),
            ("p99", "p99 ms"),
            ("max", "max ms"),
            ("ratio", "vs floor (p50 / p99)"),
        ],
        rows=rows,
        targets=[
            Target(
                "p99 delivery → retired",
                f"<= {TARGET_P99_S:g} s",
                f"{p99:.3f} s",
                p99 <= TARGET_P99_S,
            )
        ],
        settings={**s.__dict__, "worker": worker},
        notes=[
            "Embedded worker, default settings: "
            + ", ".join(f"{k} {v}" for k, v in worker.items()),
            "The delivery wakes the worker of the process that received it, so the 1 s poll "
            "interval is not on the path; the leases are claimed in one batch and retired one "
            "after the other (revoke, delete secret, commit), then the environment is deleted.",
            "Write budget: each run costs 11 GitHub writes (10 secret deletions, 1 environment "
            "deletion); at the default 80 a minute per process, runs back to back are paced "
            "after ~7 a minute per process, which this benchmark (100 runs in about a minute) "
            "is not about, so the budget is raised here. Deploy-key deletions (provider "
            "revokes) are not counted by the budget.",
            "Both sides use a warm installation token (cached per process for about an hour). "
            "The sandbox's primary rate limit (5,000 requests an hour per token, as GitHub's) is "
            "raised: the runs' setup makes about that many with one token.",
        ],
        summary=[
            Summary(
                f"Revocation, {KEYS}-key run: delivery to all retired",
                f"p50 {_ms(totals, 50):.0f} ms, p99 {p99 * 1000:.0f} ms",
                f"direct, serial: p50 {_ms(floors, 50):.0f} ms, p99 {_ms(floors, 99):.0f} ms",
                f"{ratio50:.2f} (p50), {ratio99:.2f} (p99)",
                f"p99 <= {TARGET_P99_S:g} s",
                p99 <= TARGET_P99_S,
            )
        ],
        headline=[
            f"p50 {_ms(totals, 50):.0f} ms, p99 {p99 * 1000:.0f} ms from delivery to {KEYS} "
            f"leases retired; the floor (direct, serial) p50 {_ms(floors, 50):.0f} ms, p99 "
            f"{_ms(floors, 99):.0f} ms: ratio {ratio50:.2f} (p50), {ratio99:.2f} (p99)",
        ],
        raw={"timings": [t.__dict__ for t in timings], "floors": floors},
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("revocation", __doc__ or "")
    p.add_argument("--runs", type=int, help="runs measured (default 100)")
    args = p.parse_args(argv)
    s = Settings(runs=3, warmup=1) if args.quick else Settings()
    if args.runs:
        s = Settings(runs=args.runs, warmup=s.warmup)
    return run_benchmark("revocation", run, s, args.out)


if __name__ == "__main__":
    sys.exit(main())
