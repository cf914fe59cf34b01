"""Broker mode (issue 15) against local mode, in one run, against one `runkeys serve` (gunicorn,
as deployed, SQLite ledger) and the sandbox GitHub:

1. a 10-key mint into a new environment (`ci-pr-{pr}`), the real `runkeys-action` as a
   subprocess both times: in broker mode (the step holds only its OIDC token; the service mints,
   registers and writes with its own App) and in local mode (the step holds the App key, mints,
   registers its leases with the same service, writes the secrets): wall time and GitHub calls;
2. 20 broker requests at once, each its own run and OIDC token, straight at the service:
   latency of each `POST /v1/keys` and whether it was granted.

    .venv/bin/python -m bench.broker [--quick] [--repeat N] [--concurrent N] [--bursts N]

Keys are `random`: no provider server is on the path, so what is compared is the two modes'
own work (docs/benchmarks.md#broker-mode-vs-local-mode)."""

from __future__ import annotations

import json
import math
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec
import requests

from bench.common import AUDIENCE, parser, run_benchmark, service_environ
from bench.report import Result, Spread, Summary, Target, percentile
from bench.servers import serve_service
from runkeys.broker import Destination, KeysGranted, KeysRequest, new_key_pair, unseal
from runkeys_sandbox.launch import ServerProcess
from runkeys_sandbox.server import recording
from runkeys_sandbox.server.recording import RecordedRequest
from runkeys_sandbox.server.sandbox import Sandbox
from runkeys_sandbox.server.state import App, Repository

BIN = Path(sys.executable).parent
ACTION = str(BIN / "runkeys-action")
KEYS = 10
TARGET_RATIO = 1.5
TARGET_P99_S = 2.0
UNPACED = 1_000_000  # writes a minute: see the note on GitHub's limits
# GitHub's time runs this much faster for the service's pacing (its minute: 6 ms): see the note.
TIME_FACTOR = 10_000
RUNNER_PATHS = "/_services/"  # the runner's OIDC endpoint and the issuer's keys: not GitHub's API
POLICY = """\
version: 1
rules:
  - name: bench
    match:
      repository: octo-org/app
      event_name: pull_request
    max_keys: {keys}
    destinations:
      job: true
      environments: ["ci-pr-*"]
    allow:
      - provider: random
        max_ttl: 1h
"""


def minimum_calls(keys: int) -> int:
    """The installation, its token, whether the environment exists, creating it, its public
    key, one PUT per secret: what local mode makes (bench.action)."""
    return keys + 5


def spec(keys: int) -> str:
    return "".join(f"KEY_{i}: {{provider: random, ttl: 30m}}\n" for i in range(keys))


@dataclass
class Calls:
    """The GitHub API calls the sandbox answers (not the runner's OIDC endpoints)."""

    paths: list[str] = field(default_factory=list)
    first: float | None = None  # when the sandbox first answered anything (the OIDC endpoint too)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, entry: RecordedRequest) -> None:
        with self.lock:
            self.first = self.first or time.perf_counter()
            if not entry.path.startswith(RUNNER_PATHS):
                self.paths.append(entry.operation or f"{entry.method} {entry.path}")

    def take(self) -> tuple[list[str], float | None]:
        with self.lock:
            taken, first, self.paths, self.first = self.paths, self.first, [], None
            return taken, first


@dataclass
class Mint:
    seconds: float  # spawn → exit
    calls: list[str]  # the GitHub calls of the step and of the service for it
    service_ms: float  # the service's own time answering the step (its access log)
    first_call: float  # spawn → the sandbox's first answer (interpreter, imports, planning)


@dataclass
class Answer:
    seconds: float  # request sent → answer read
    status: int
    error: str | None  # why it does not count as granted


class World:
    """The sandbox (its App installed on one repository), and the service with a policy that
    allows `random` keys into `ci-pr-*` for that repository's pull requests."""

    def __init__(self, tmp: Path, keys: int) -> None:
        self.tmp = tmp
        self.keys = keys
        self.sandbox = Sandbox().start()
        # Hundreds of runs from one installation: more than GitHub's 5,000 calls an hour per
        # token, which is not what this measures.
        self.sandbox.rate_limits.update(installation=10**9, app=10**9)
        self.app: App = self.sandbox.add_app()
        self.repo: Repository = self.sandbox.add_repository("octo-org/app")
        self.sandbox.install(self.app, [self.repo])
        self.calls = Calls()
        recording.add_listener(self.calls)
        self.policy = tmp / "policy.yml"
        self.policy.write_text(POLICY.format(keys=keys))
        self.server: ServerProcess | None = None
        self.servers = 0
        self.log = tmp / "service.log"
        self.log_read = 0  # how much of the service's log `service_ms` has read
        self.pr = 100

    def serve(self) -> ServerProcess:
        """A new service (its caches cold), replacing the one before."""
        if self.server is not None:
            self.server.stop()
        self.servers += 1
        environ = service_environ(
            f"sqlite:///{self.tmp / f'ledger-{self.servers}.sqlite3'}",
            github_url=self.sandbox.url,
            app_id=self.app.id,
            private_key=self.app.private_key_pem,
            oidc_issuer=self.sandbox.oidc_issuer_url,
            extra={
                "RUNKEYS_POLICY_FILE": str(self.policy),
                "RUNKEYS_OIDC_AUDIENCE": AUDIENCE,
                "RUNKEYS_GITHUB_WRITES_PER_MINUTE": str(UNPACED),
                "RUNKEYS_GITHUB_TIME_FACTOR": str(TIME_FACTOR),
            },
        )
        self.log = self.tmp / f"service-{self.servers}.log"
        self.server = serve_service(environ, self.log)
        self.log_read = 0
        return self.server

    def service_ms(self) -> float:
        """The time the service spent answering `/v1/` requests since the last call, from
        gunicorn's access log (`duration_ms`)."""
        with self.log.open("rb") as log:
            log.seek(self.log_read)
            text = log.read()
        text = text[: text.rfind(b"\n") + 1]  # a line being written is read next time
        self.log_read += len(text)
        total = 0.0
        for line in text.decode(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("logger") == "gunicorn.access" and entry["path"].startswith("/v1/"):
                total += float(entry["duration_ms"])
        return total

    def close(self) -> None:
        recording.remove_listener(self.calls)
        if self.server is not None:
            self.server.stop()
        self.sandbox.stop()

    def pull_request(self) -> tuple[int, Any]:
        """A new pull request's run, and its job's OIDC claims (as the runner signs them)."""
        self.pr += 1
        run = self.sandbox.add_workflow_run(
            self.repo, event="pull_request", pull_requests=[self.pr]
        )
        claims = self.sandbox.run_claims(self.repo, run)
        claims = replace(claims, ref=f"refs/pull/{self.pr}/merge", event_name="pull_request")
        return self.pr, claims

    def _step_env(self, pr: int, claims: Any, mode: str) -> dict[str, str]:
        step = self.tmp / f"step-{pr}"
        step.mkdir()
        event = step / "event.json"
        event.write_text(
            json.dumps({"action": "opened", "number": pr, "pull_request": {"number": pr}})
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            "GITHUB_REPOSITORY": self.repo.full_name,
            "GITHUB_REPOSITORY_ID": str(self.repo.id),
            "GITHUB_RUN_ID": str(claims.run_id),
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_RUN_NUMBER": str(claims.run_number),
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_EVENT_PATH": str(event),
            "GITHUB_REF": f"refs/pull/{pr}/merge",
            "GITHUB_API_URL": self.sandbox.url,
            "HOME": str(step / "home"),  # the runner always sets it; the scan's list goes there
            "INPUT_KEYS": spec(self.keys),
            "INPUT_ENVIRONMENT": "ci-pr-{pr}",
            "INPUT_AUDIENCE": AUDIENCE,
            "INPUT_MODE": "broker" if mode == "broker" else "local",
        }
        for name in ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY"):
            path = step / name.lower()
            path.touch()
            env[name] = str(path)
        if mode != "broker":
            env |= {"INPUT_APP-ID": str(self.app.id), "INPUT_PRIVATE-KEY": self.app.private_key_pem}
        if mode != "local-alone":  # without a service: no lease registered
            assert self.server is not None
            env |= {"INPUT_SERVICE-URL": self.server.url, **self.sandbox.runner_oidc_env(claims)}
        return env

    def mint(self, mode: str) -> Mint:
        """One step minting `keys` keys into its pull request's new environment."""
        pr, claims = self.pull_request()
        env = self._step_env(pr, claims, mode)
        self.calls.take()
        started = time.perf_counter()
        done = subprocess.run(
            [ACTION], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        seconds = time.perf_counter() - started
        calls, first = self.calls.take()
        time.sleep(0.05)  # gunicorn writes its access line after the answer
        service_ms = self.service_ms()
        if done.returncode != 0:
            raise RuntimeError(f"{mode} step failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
        written = self.sandbox.secret_names(self.repo, f"ci-pr-{pr}")
        if len(written) != self.keys:
            raise RuntimeError(f"{mode} step wrote {len(written)} secrets, not {self.keys}")
        return Mint(seconds, calls, service_ms, (first or started) - started)

    def ask(
        self, http: requests.Session, token: str, kind: str, barrier: threading.Barrier
    ) -> Answer:
        """One `POST /v1/keys` as the action sends it (no retry: a failure counts), its answer
        unsealed and checked."""
        assert self.server is not None
        private, public = new_key_pair()
        destination = (
            Destination(kind="environment", environment="ci-pr-{pr}")
            if kind == "environment"
            else Destination(kind="job")
        )
        body = msgspec.json.encode(
            KeysRequest(
                request_id=new_request_id(),
                keys=spec(self.keys),
                destination=destination,
                public_key=public,
            )
        )
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        barrier.wait()
        started = time.perf_counter()
        try:
            answer = http.post(f"{self.server.url}/v1/keys", data=body, headers=headers, timeout=60)
            seconds = time.perf_counter() - started
        except requests.RequestException as exc:
            return Answer(time.perf_counter() - started, 0, type(exc).__name__)
        if answer.status_code != 201:
            return Answer(seconds, answer.status_code, answer.text[:300])
        try:
            granted = msgspec.json.decode(answer.content, type=KeysGranted)
            opened = [unseal(private, key.sealed) for key in granted.keys]
        except Exception as exc:
            return Answer(seconds, answer.status_code, f"answer unusable: {type(exc).__name__}")
        if len(opened) != self.keys or not all(x.value for x in opened):
            return Answer(seconds, answer.status_code, f"{len(opened)} keys, not {self.keys}")
        return Answer(seconds, answer.status_code, None)

    def service_cpu(self) -> float:
        """CPU seconds the service's processes (gunicorn's master and workers) have used: what
        its requests cost whatever else the machine is running. NaN without Linux's /proc."""
        assert self.server is not None
        master = self.server.process.pid
        total = 0.0
        try:
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:  # a process that ended meanwhile
                    continue
                if int(stat.parent.name) == master or int(fields[1]) == master:
                    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            return math.nan
        return total

    def burst(self, concurrent: int, kind: str) -> list[Answer]:
        """`concurrent` requests sent at once, each its own pull request's run and token."""
        tokens = []
        for _ in range(concurrent):
            _, claims = self.pull_request()
            tokens.append(self.sandbox.oidc_token(claims, AUDIENCE))
        barrier = threading.Barrier(concurrent)
        answers: list[Answer | None] = [None] * concurrent

        def one(i: int) -> None:
            with requests.Session() as http:
                answers[i] = self.ask(http, tokens[i], kind, barrier)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [a or Answer(0, 0, "no answer") for a in answers]


def new_request_id() -> str:
    return secrets.token_urlsafe(24)  # as the action makes one per step attempt


@dataclass(frozen=True)
class Settings:
    keys: int = KEYS
    repeat: int = 7
    warmup: int = 1
    concurrent: int = 20
    bursts: int = 3
    alone: int = 10  # requests one at a time: the bursts' baseline


@dataclass
class Measured:
    cold: dict[str, list[str]] = field(default_factory=dict)  # mode → calls on a fresh service
    mints: dict[str, list[Mint]] = field(default_factory=dict)
    bursts: dict[str, list[Answer]] = field(default_factory=dict)
    alone: dict[str, list[Answer]] = field(default_factory=dict)  # one request at a time
    cpu_ms: dict[str, float] = field(default_factory=dict)  # the service's CPU per burst request


MODES = ("broker", "local", "local-alone")


def run(s: Settings, tmp: Path) -> Result:
    world = World(tmp, s.keys)
    measured = Measured(mints={m: [] for m in MODES})
    try:
        # The first request of a fresh service, per mode: its installation lookup and token
        # are in the count (a service that has served one run has them cached for an hour).
        for mode in ("broker", "local"):
            world.serve()
            measured.cold[mode] = world.mint(mode).calls
        for _ in range(s.warmup):  # the interpreter and packages into the page cache
            for mode in MODES:
                world.mint(mode)
        for _ in range(s.repeat):
            for mode in MODES:  # interleaved: a busy moment hits all three
                measured.mints[mode].append(world.mint(mode))
        for kind in ("environment", "job"):
            world.burst(2, kind)  # warm: the narrowed token of this destination is cached
            measured.alone[kind] = [a for _ in range(s.alone) for a in world.burst(1, kind)]
            before = world.service_cpu()
            measured.bursts[kind] = [
                a for _ in range(s.bursts) for a in world.burst(s.concurrent, kind)
            ]
            used = world.service_cpu() - before
            measured.cpu_ms[kind] = used * 1000 / len(measured.bursts[kind])
    finally:
        world.close()
    return _result(s, measured)


def _median(mints: Sequence[Mint]) -> float:
    return Spread.of([m.seconds for m in mints]).median


def _result(s: Settings, m: Measured) -> Result:
    rows: list[dict[str, Any]] = []
    who = {
        "broker": "broker mode (service mints, registers, writes)",
        "local": "local mode + lease service (step mints, registers, writes)",
        "local-alone": "local mode, no service (no lease registered)",
    }
    baseline = _median(m.mints["local"])
    for mode in MODES:
        mints = m.mints[mode]
        warm = {len(x.calls) for x in mints}
        rows.append(
            {
                "who": who[mode],
                "seconds": Spread.of([x.seconds for x in mints]).show(2),
                "first_call": Spread.of([x.first_call for x in mints]).show(2),
                "service": Spread.of([x.service_ms for x in mints]).show(0),
                "ratio": f"{_median(mints) / baseline:.2f}",
                "cold": len(m.cold[mode]) if mode in m.cold else "-",
                "calls": "/".join(str(c) for c in sorted(warm)),
                "minimum": minimum_calls(s.keys),
            }
        )
    ratio = _median(m.mints["broker"]) / baseline
    broker_cold, local_cold = len(m.cold["broker"]), len(m.cold["local"])
    broker_warm = max(len(x.calls) for x in m.mints["broker"])
    calls_ok = broker_cold <= minimum_calls(s.keys) and broker_warm <= minimum_calls(s.keys)
    targets = [
        Target(
            f"time, broker vs local mode ({s.keys} keys, new environment)",
            f"<= {TARGET_RATIO:g}x",
            f"{ratio:.2f}x",
            ratio <= TARGET_RATIO,
        ),
        Target(
            "GitHub calls, broker mode: fresh service / warm",
            f"<= {minimum_calls(s.keys)} (local mode's minimum)",
            f"{broker_cold} / {broker_warm}",
            calls_ok,
        ),
    ]
    summary = [
        Summary(
            f"Broker mode, {s.keys} keys into a new environment",
            f"{_median(m.mints['broker']):.2f} s; {broker_cold} GitHub calls (fresh service), "
            f"{broker_warm} (warm)",
            f"local mode + lease service: {baseline:.2f} s, {local_cold} calls",
            f"{ratio:.2f} (time)",
            f"<= {TARGET_RATIO:g}x, calls <= {minimum_calls(s.keys)}",
            ratio <= TARGET_RATIO and calls_ok,
        )
    ]
    headline = [
        f"{s.keys} keys into a new environment: broker {_median(m.mints['broker']):.2f} s, "
        f"local {baseline:.2f} s (ratio {ratio:.2f}); GitHub calls broker {broker_cold} cold / "
        f"{broker_warm} warm, local {local_cold}",
    ]
    burst_rows: dict[str, Any] = {}
    for kind, answers in m.bursts.items():
        seconds = [a.seconds for a in answers]
        failed = [a for a in answers if a.error is not None]
        p50, p99 = percentile(seconds, 50), percentile(seconds, 99)
        alone = m.alone[kind]
        failed += [a for a in alone if a.error is not None]
        single = percentile([a.seconds for a in alone], 50)
        met = p99 <= TARGET_P99_S and not failed
        where = "a new environment each" if kind == "environment" else "job only (no secrets)"
        burst_rows[kind] = {
            "p50": p50,
            "p99": p99,
            "max": max(seconds),
            "alone_p50": single,
            "service_cpu_ms_per_request": m.cpu_ms[kind],
            "failed": len(failed),
            "errors": sorted({f"{a.status} {a.error}" for a in failed})[:5],
        }
        targets.append(
            Target(
                f"{s.concurrent} requests at once, {s.keys} keys, {where}",
                f"p99 <= {TARGET_P99_S:g} s, none fails",
                f"p99 {p99:.2f} s, {len(failed)} of {len(answers)} failed",
                met,
            )
        )
        summary.append(
            Summary(
                f"Broker mode, {s.concurrent} requests at once ({s.keys} keys, {where})",
                f"p50 {p50:.2f} s, p99 {p99:.2f} s, {len(failed)} of {len(answers)} failed",
                f"one at a time: p50 {single:.2f} s",
                f"{p50 / single:.1f} (p50), {p99 / single:.1f} (p99)",
                f"p99 <= {TARGET_P99_S:g} s, none fails",
                met,
            )
        )
        headline.append(
            f"{s.concurrent} at once ({where}): p50 {p50:.2f} s, p99 {p99:.2f} s, "
            f"max {max(seconds):.2f} s, {len(failed)} failed of {len(answers)}; one at a time "
            f"p50 {single:.2f} s; the service's CPU {m.cpu_ms[kind]:.0f} ms a request"
        )
    return Result(
        name="broker",
        title=f"Broker mode vs local mode: {s.keys} keys into a new environment",
        method=f"`runkeys-action` as a subprocess, `environment: ci-pr-{{pr}}`, {s.keys} "
        f"`random` keys (lifetime `run`), {s.repeat} interleaved repetitions after "
        f"{s.warmup} warm-up; wall time from spawning the step to its exit. One "
        "`runkeys serve` (gunicorn, 1 worker of 4 threads, SQLite ledger) serves both "
        f"modes. Then {s.bursts} bursts of {s.concurrent} `POST /v1/keys` sent at once "
        "(each its own run and token, no retry), per destination, against "
        f"{s.alone} such requests one at a time.",
        columns=[
            ("who", "who"),
            ("seconds", "wall s (min-max)"),
            ("ratio", "time vs local + service"),
            ("first_call", "start → first request s"),
            ("service", "service's own ms (access log)"),
            ("cold", "GitHub calls, fresh service"),
            ("calls", "GitHub calls, warm"),
            ("minimum", "minimum"),
        ],
        rows=rows,
        targets=targets,
        settings={**s.__dict__},
        notes=[
            "GitHub calls: every request the sandbox answered for the step, from the step and "
            "from the service, but the runner's OIDC endpoint and the issuer's keys. Fresh "
            "service: its first request, which looks up the App's installation and mints its "
            "narrowed installation token; both are kept (the token for about an hour), so a "
            "warm service's broker request makes only the environment's calls.",
            "Local mode + lease service is the baseline: the same keys, lifetime `run`, "
            "registered in the same ledger, so both modes leave the same retirable leases. "
            "Local mode without a service is shown for reference (its `run` keys are not "
            "retired at the run's end).",
            "Both modes start a Python process: `start → first request` is the interpreter, "
            "the imports and the planning, up to the step's first request (the runner's OIDC "
            "endpoint or GitHub). Broker mode's step imports PyGithub and the database "
            "drivers too (through `runkeys.issuance`) although it calls neither.",
            f"GitHub's limits lifted for the service (`RUNKEYS_GITHUB_WRITES_PER_MINUTE` "
            f"{UNPACED}, `RUNKEYS_GITHUB_TIME_FACTOR` {TIME_FACTOR:,}): a burst of "
            f"{s.concurrent} 10-key requests into new environments makes "
            f"{s.concurrent * (s.keys + 1)} content-creating GitHub requests, more than "
            "GitHub's 80 a minute and 900 points a minute per installation, which the "
            "service's pacing would spread over minutes (and this run's, over its 500 writes "
            "an hour): that is GitHub's limit, not the service's latency. The job-only burst "
            "writes nothing to GitHub.",
            "The service's CPU (gunicorn's processes, from /proc, over the bursts) a request: "
            + ", ".join(f"{k} {v:.0f} ms" for k, v in m.cpu_ms.items())
            + f"; a burst of {s.concurrent} needs {s.concurrent} times that of one worker, "
            "which shares its cores with whatever else runs (the load average in the machine "
            "line).",
            "The sandbox runs in the benchmark's process and answers on loopback: GitHub's own "
            "latency (tens of ms a call) is not in these figures.",
        ],
        headline=headline,
        summary=summary,
        raw={
            "cold": m.cold,
            "mints": {k: [x.__dict__ for x in v] for k, v in m.mints.items()},
            "bursts": {k: [a.__dict__ for a in v] for k, v in m.bursts.items()},
            "alone": {k: [a.__dict__ for a in v] for k, v in m.alone.items()},
            "burst_stats": burst_rows,
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("broker", __doc__ or "")
    p.add_argument("--concurrent", type=int, help="requests at once (default 20)")
    p.add_argument("--bursts", type=int, help="bursts of them per destination (default 3)")
    args = p.parse_args(argv)
    quick = Settings(repeat=1, warmup=1, concurrent=4, bursts=1, alone=2)
    s = quick if args.quick else Settings()
    if args.repeat:
        s = replace(s, repeat=args.repeat)
    if args.concurrent:
        s = replace(s, concurrent=args.concurrent)
    if args.bursts:
        s = replace(s, bursts=args.bursts)
    return run_benchmark("broker", run, s, args.out)


if __name__ == "__main__":
    sys.exit(main())
