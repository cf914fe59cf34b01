"""The action: wall time and GitHub API calls to put 1, 10 and 50 fresh keys into the secrets of
a new environment — the real `runkeys-action` as a subprocess, as the GitHub App, against the
sandbox — and the same done by a naive PyGithub script (`bench.naive_action`, same run).

    .venv/bin/python -m bench.action [--quick] [--keys 1,10,50] [--repeat N]

The fewest calls for N keys is N + 5 (docs/benchmarks.md#method says which)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import parser, run_benchmark
from bench.report import Result, Spread, Summary, Target
from runkeys_sandbox.server import recording
from runkeys_sandbox.server.recording import RecordedRequest
from runkeys_sandbox.server.sandbox import Sandbox
from runkeys_sandbox.server.state import App, Repository

BIN = Path(sys.executable).parent
ACTION = str(BIN / "runkeys-action")
WRITES_PER_MINUTE = 80  # GitHub's secondary limit on content-creating requests
TARGET_SECONDS_10 = 1.0


def minimum_calls(keys: int) -> int:
    return keys + 5


@dataclass
class Exchange:
    at: float
    method: str
    path: str
    status: int


@dataclass
class Recorder:
    """Every exchange the sandbox answers, with the time it was answered."""

    exchanges: list[Exchange] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, entry: RecordedRequest) -> None:
        with self.lock:
            self.exchanges.append(Exchange(time.time(), entry.method, entry.path, entry.status))

    def take(self) -> list[Exchange]:
        with self.lock:
            taken, self.exchanges = self.exchanges, []
            return taken


@dataclass
class Measured:
    seconds: float  # spawn → exit
    calls: int
    writes: int  # content-creating: PUT/POST/PATCH/DELETE on the repository
    first_call: float  # spawn → the first API call answered (interpreter, imports, planning)
    busiest_minute: int  # the most content-creating requests in any 60 s
    errors: int  # answers >= 400 other than the expected 404 for a missing environment


def is_write(exchange: Exchange) -> bool:
    return exchange.method in ("PUT", "POST", "PATCH", "DELETE") and exchange.path.startswith(
        "/repos/"
    )


def busiest_minute(times: Sequence[float]) -> int:
    return max((sum(1 for t in times if start <= t < start + 60) for start in times), default=0)


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sandbox = Sandbox().start()
        self.app: App = self.sandbox.add_app()
        self.repo: Repository = self.sandbox.add_repository("octo-org/app")
        self.sandbox.install(self.app, [self.repo])
        self.recorder = Recorder()
        recording.add_listener(self.recorder)
        self.runs = 0

    def close(self) -> None:
        recording.remove_listener(self.recorder)
        self.sandbox.stop()

    def _base_env(self, run_id: int) -> dict[str, str]:
        step = self.tmp / f"step-{run_id}"
        step.mkdir()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            "HOME": str(step / "home"),  # the runner always sets it; the scan's list goes there
            "GITHUB_REPOSITORY": self.repo.full_name,
            "GITHUB_REPOSITORY_ID": str(self.repo.id),
            "GITHUB_RUN_ID": str(run_id),
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_RUN_NUMBER": str(run_id),
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_API_URL": self.sandbox.url,
        }
        for name in ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY"):
            path = step / name.lower()
            path.touch()
            env[name] = str(path)
        return env

    def _measure(self, argv: list[str], env: dict[str, str]) -> tuple[Measured, str]:
        self.recorder.take()
        started_wall, started = time.time(), time.perf_counter()
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        seconds = time.perf_counter() - started
        exchanges = self.recorder.take()
        if done.returncode != 0:
            raise RuntimeError(f"{argv[-1]} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
        writes = [e.at for e in exchanges if is_write(e)]
        errors = [
            e for e in exchanges if e.status >= 400 and not (e.status == 404 and e.method == "GET")
        ]
        return Measured(
            seconds=seconds,
            calls=len(exchanges),
            writes=len(writes),
            first_call=min((e.at for e in exchanges), default=started_wall) - started_wall,
            busiest_minute=busiest_minute(writes),
            errors=len(errors),
        ), done.stdout

    def runkeys(self, keys: int) -> Measured:
        self.runs += 1
        run_id = 9000 + self.runs
        env = self._base_env(run_id)
        spec = "".join(f"KEY_{i}: {{provider: random, ttl: 30m}}\n" for i in range(keys))
        env |= {
            "INPUT_KEYS": spec,
            "INPUT_ENVIRONMENT": "ci-run-{run_id}",
            "INPUT_APP-ID": str(self.app.id),
            "INPUT_PRIVATE-KEY": self.app.private_key_pem,
        }
        measured, _ = self._measure([ACTION], env)
        names = self.sandbox.secret_names(self.repo, f"ci-run-{run_id}")
        if len(names) != keys:
            raise RuntimeError(f"runkeys wrote {len(names)} secrets, not {keys}")
        return measured

    def naive(self, keys: int) -> Measured:
        self.runs += 1
        run_id = 9000 + self.runs
        env = self._base_env(run_id) | {
            "NAIVE_KEYS": str(keys),
            "NAIVE_ENVIRONMENT": f"ci-run-{run_id}",
            "NAIVE_APP_ID": str(self.app.id),
            "NAIVE_PRIVATE_KEY": self.app.private_key_pem,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
        measured, _ = self._measure([sys.executable, "-m", "bench.naive_action"], env)
        if len(self.sandbox.secret_names(self.repo, f"ci-run-{run_id}")) != keys:
            raise RuntimeError("the naive script did not write every secret")
        return measured


@dataclass(frozen=True)
class Settings:
    keys: tuple[int, ...] = (1, 10, 50)
    repeat: int = 5
    warmup: int = 1


def run(s: Settings, tmp: Path) -> Result:
    bench = Bench(tmp)
    results: dict[int, dict[str, list[Measured]]] = {
        k: {"runkeys": [], "naive": []} for k in s.keys
    }
    try:
        for _ in range(s.warmup):  # the interpreter and packages into the page cache
            bench.runkeys(1)
            bench.naive(1)
        for _ in range(s.repeat):
            for keys in s.keys:  # interleaved: a busy moment hits both
                results[keys]["runkeys"].append(bench.runkeys(keys))
                results[keys]["naive"].append(bench.naive(keys))
    finally:
        bench.close()
    return _result(s, results)


def _row(keys: int, who: str, runs: list[Measured], baseline: list[Measured]) -> dict[str, Any]:
    seconds = Spread.of([m.seconds for m in runs])
    ratio = seconds.median / Spread.of([m.seconds for m in baseline]).median
    return {
        "keys": keys,
        "who": who,
        "seconds": seconds.show(2),
        "first_call": Spread.of([m.first_call for m in runs]).show(2),
        "calls": runs[0].calls,
        "minimum": minimum_calls(keys),
        "writes": runs[0].writes,
        "busiest_minute": max(m.busiest_minute for m in runs),
        "ratio": f"{ratio:.2f}",
    }


def _result(s: Settings, results: dict[int, dict[str, list[Measured]]]) -> Result:
    rows, targets, headline, summary = [], [], [], []
    for keys, both in results.items():
        rows.append(_row(keys, "runkeys-action", both["runkeys"], both["naive"]))
        rows.append(_row(keys, "naive PyGithub", both["naive"], both["naive"]))
        mine, naive = rows[-2], rows[-1]
        calls_ok = all(m.calls == minimum_calls(keys) for m in both["runkeys"])
        errors = sum(m.errors for m in both["runkeys"])
        headline.append(
            f"{keys} keys: runkeys {mine['seconds']} s, {mine['calls']} calls "
            f"(minimum {mine['minimum']}); naive {naive['seconds']} s, "
            f"{naive['calls']} calls; time ratio {mine['ratio']}"
        )
        targets.append(
            Target(
                f"calls, {keys} keys",
                f"= minimum ({minimum_calls(keys)})",
                str(mine["calls"]),
                calls_ok and errors == 0,
            )
        )
        targets.append(
            Target(
                f"content-creating requests, {keys} keys",
                f"<= {WRITES_PER_MINUTE} in any minute",
                str(mine["busiest_minute"]),
                mine["busiest_minute"] <= WRITES_PER_MINUTE,
            )
        )
        median = Spread.of([m.seconds for m in both["runkeys"]]).median
        fast = median <= TARGET_SECONDS_10 if keys == 10 else True
        within = mine["busiest_minute"] <= WRITES_PER_MINUTE
        summary.append(
            Summary(
                f"Action, {keys} key{'' if keys == 1 else 's'} into a new environment",
                f"{median:.2f} s, {mine['calls']} API calls, {mine['writes']} writes",
                f"naive PyGithub: {naive['seconds'].split()[0]} s, {naive['calls']} calls",
                f"{mine['ratio']} (time), {mine['calls'] / naive['calls']:.2f} (calls)",
                f"calls = {minimum_calls(keys)} (minimum), <= {WRITES_PER_MINUTE} writes/min"
                + (f", <= {TARGET_SECONDS_10:g} s" if keys == 10 else ""),
                calls_ok and errors == 0 and within and fast,
            )
        )
        if keys == 10:
            targets.append(
                Target(
                    "wall time, 10 keys",
                    f"<= {TARGET_SECONDS_10:g} s",
                    f"{median:.2f} s",
                    median <= TARGET_SECONDS_10,
                )
            )
    return Result(
        name="action",
        title="The action: N fresh keys into a new environment's secrets",
        method=f"`runkeys-action` (subprocess, App auth, `environment: ci-run-{{run_id}}`, "
        f"`random` keys, no service) vs a naive PyGithub script; {s.repeat} interleaved "
        "repetitions after a warm-up; wall time from spawning the process to its exit.",
        columns=[
            ("keys", "keys"),
            ("who", "who"),
            ("seconds", "wall s"),
            ("first_call", "start → first API call s"),
            ("calls", "API calls"),
            ("minimum", "minimum calls"),
            ("writes", "content-creating"),
            ("busiest_minute", "most in any 60 s"),
            ("ratio", "time vs naive"),
        ],
        rows=rows,
        targets=targets,
        settings={**s.__dict__},
        notes=[
            "Minimum for N keys: N + 5 calls (installation, token, environment exists?, create "
            "it, public key, N secret PUTs); N + 1 of them create content.",
            "The naive script makes 2N + 4: it reads the public key before every secret, reads "
            "the repository (PyGithub is not lazy by default) and creates the environment "
            "without checking, which on an existing one resets its protection rules. With "
            "PyGithub's default pacing (1 s between writes) it would take N + 1 seconds more.",
            f"50 keys use 51 of the {WRITES_PER_MINUTE} content-creating requests GitHub allows "
            "a minute, so the action's `WriteBudget` never waits; a 100-key environment (GitHub's "
            "cap per environment) needs 101 and waits until the first write is a minute old "
            "(`--keys 100` shows it).",
            "Wall time includes starting Python and importing PyGithub (the `start → first API "
            "call` column); the sandbox answers on loopback, so GitHub's own latency "
            "(tens of ms a call) is not in these figures: multiply the calls by it.",
        ],
        headline=headline,
        summary=summary,
        raw={
            str(k): {w: [m.__dict__ for m in v] for w, v in b.items()} for k, b in results.items()
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("action", __doc__ or "")
    p.add_argument("--keys", help="comma-separated key counts (default 1,10,50)")
    args = p.parse_args(argv)
    s = Settings(keys=(1, 10), repeat=1, warmup=0) if args.quick else Settings()
    if args.keys:
        s = Settings(tuple(int(k) for k in args.keys.split(",")), s.repeat, s.warmup)
    if args.repeat:
        s = Settings(s.keys, args.repeat, s.warmup)
    return run_benchmark("action", run, s, args.out)


if __name__ == "__main__":
    sys.exit(main())
