"""Webhook intake: requests/s and latency of `POST /webhook` under `runkeys serve`, against a
bare Flask endpoint under the same gunicorn settings (the baseline, measured in the same run).

    .venv/bin/python -m bench.webhook [--quick] [--pin] [--repeat N] [--seconds S]

Signed `workflow_run` `completed` deliveries for runs with no lease and with 10 leases, driven by
`wrk` on loopback with the revocation worker off; the 10-lease case also measures `bench.bare
--ledger`, the floor under a delivery that retires keys. Method: docs/benchmarks.md#method."""

from __future__ import annotations

import argparse
import math
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.bare import Writes
from bench.common import WEBHOOK_SECRET, parser, run_benchmark, service_environ
from bench.payloads import RunDeliveries, run_deliveries
from bench.report import Result, Spread, Summary, Target
from bench.rows import lease_row, load
from bench.servers import THREADS, WORKERS, private_key_pem, serve_bare, serve_service
from bench.wrk import Load, run_wrk, wrk_version
from handler.ledger import Ledger, tables
from handler.ledger.completions import apply_completions
from runkeys.leases import LeaseState
from runkeys_sandbox.launch import ServerProcess

# The intake floor (issue 16): of the bare endpoint's requests/s, for a run with leases, which
# commits its completion before it answers; a run without leases does less and is held to it too.
TARGET_RATIO = {"no_leases": 0.5, "leases": 0.5}
TARGET_P99_MS = 20.0
NO_LEASES_RUN = 1  # no lease in the ledger names this run
LEASES_PER_RUN = 10
RUNS_PER_SECOND = 500  # at least this many leased runs ready per second of measurement


@dataclass(frozen=True)
class Settings:
    seconds: float = 5.0
    warmup: float = 2.0
    repeat: int = 3
    connections: int = 4  # 2 per worker process: both busy, answers not queued behind others
    sweep: tuple[int, ...] = (1, 2, 4, 8, 16)
    sweep_seconds: float = 3.0
    pin: bool = False

    @property
    def server_cpus(self) -> list[int] | None:
        return [0] if self.pin else None

    @property
    def wrk_cpus(self) -> list[int] | None:
        return [1] if self.pin else None


QUICK = Settings(seconds=1, warmup=0, repeat=1, connections=2, sweep=(), sweep_seconds=1)


class Workload:
    """The files wrk reads: the payload template, and the runs (with signatures) to name."""

    def __init__(self, tmp: Path, deliveries: RunDeliveries) -> None:
        self.tmp = tmp
        self.deliveries = deliveries
        self.template = tmp / "template.json"
        self.template.write_text(deliveries.template)
        self._files = 0

    def runs_file(self, run_ids: Sequence[int]) -> Path:
        self._files += 1
        path = self.tmp / f"runs-{self._files}.txt"
        with path.open("w") as out:
            for run_id in run_ids:
                _, signature = self.deliveries.signed(run_id, WEBHOOK_SECRET)
                out.write(f"{run_id} {signature}\n")
        return path


class LeasedRuns:
    """Runs with 10 active leases each, put in the ledger before a measurement."""

    def __init__(self, ledger: Ledger, deliveries: RunDeliveries) -> None:
        self.ledger = ledger
        self.deliveries = deliveries
        self.next_run = 10_000_000
        self.last: list[int] = []  # the runs `fresh` made last

    def fresh(self, work: Workload, runs: int) -> Callable[[], Path]:
        """What makes a runs file of `runs` new leased runs, each time it is called."""

        def make() -> Path:
            self.last = self.add(runs)
            return work.runs_file(self.last)

        return make

    def add(self, runs: int) -> list[int]:
        d, now = self.deliveries, datetime.now(UTC)
        ids = list(range(self.next_run, self.next_run + runs))
        self.next_run += runs
        rows = (
            lease_row(
                repository_id=d.repository_id,
                repository=d.repository,
                installation_id=d.installation_id,
                owner_id=d.owner_id,
                run_id=run_id,
                issued_at=now,
                ttl=timedelta(hours=1),
                key_name=f"KEY_{k}",
                environment=f"ci-run-{run_id}",
            )
            for run_id in ids
            for k in range(LEASES_PER_RUN)
        )
        load(self.ledger, rows)
        return ids

    def queued(self, run_ids: Sequence[int]) -> int:
        """Apply the completions the measurement recorded, as the worker would (the worker is
        off while measuring), and count the leases of these runs they queued."""
        leases = tables.leases
        with self.ledger.begin() as conn:
            while apply_completions(conn, limit=1000):
                pass
            return int(
                conn.scalar(
                    select(func.count())
                    .select_from(leases)
                    .where(
                        leases.c.run_id.between(min(run_ids), max(run_ids)),
                        leases.c.state == LeaseState.REVOKING.value,
                    )
                )
                or 0
            )


# A keep-alive connection stays with the gunicorn worker that accepted it: a measurement whose
# connections all landed on one of several workers says nothing of the server, and is taken again.
LOPSIDED_SHARE = 0.8  # one worker did more than this share of the workers' CPU time
MEASURE_ATTEMPTS = 5
REMEASURED: list[float] = []  # the busiest worker's share in each measurement taken again


def workers_cpu(server: ServerProcess) -> dict[int, int]:
    """Each gunicorn worker's CPU time so far, in clock ticks (utime + stime)."""
    ticks = {}
    for pid in server.worker_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def cpu_us_per_request(before: dict[int, int], after: dict[int, int], requests: int) -> float:
    """The server's workers' CPU time (user + system) per request answered: what a request
    costs the server, which the host's other load moves less than it moves requests/s."""
    used = sum(after[pid] - before.get(pid, 0) for pid in after)
    return used / os.sysconf("SC_CLK_TCK") * 1e6 / max(requests, 1)


def busiest_share(before: dict[int, int], after: dict[int, int]) -> float | None:
    used = [after[pid] - before.get(pid, 0) for pid in after]
    if len(used) < 2 or sum(used) <= 0:
        return None
    return max(used) / sum(used)


def measure(
    server: ServerProcess,
    work: Workload,
    runs: Path | Callable[[], Path],
    s: Settings,
    *,
    connections: int,
    seconds: float,
) -> tuple[Load, float]:
    """One wrk measurement, taken again if it was lopsided, and the server's CPU time per
    request in it. `runs`: the runs file, or what makes a fresh one for each attempt (an
    attempt uses up its leased runs)."""
    for attempt in range(1, MEASURE_ATTEMPTS + 1):
        before = workers_cpu(server)
        load_ = run_wrk(
            server.url,
            template=work.template,
            runs=runs if isinstance(runs, Path) else runs(),
            prefix=uuid.uuid4().hex[:12],
            seconds=seconds,
            connections=connections,
            cpus=s.wrk_cpus,
        )
        if load_.errors:
            raise RuntimeError(f"{load_.errors} requests failed; see {server.log}")
        after = workers_cpu(server)
        share = busiest_share(before, after)
        if connections < 2 or share is None or share <= LOPSIDED_SHARE:
            break
        if attempt < MEASURE_ATTEMPTS:
            REMEASURED.append(share)
    return load_, cpu_us_per_request(before, after, load_.requests)


@dataclass
class Case:
    name: str
    loads: list[Load]
    extra: dict[str, Any]
    cpu_us: list[float] = field(default_factory=list)  # the server's CPU time per request

    def add(self, measured: tuple[Load, float]) -> Load:
        self.loads.append(measured[0])
        self.cpu_us.append(measured[1])
        return measured[0]

    def rps(self) -> Spread:
        return Spread.of([x.rps for x in self.loads])

    def p50(self) -> Spread:
        return Spread.of([x.p50_ms for x in self.loads])

    def p99(self) -> Spread:
        return Spread.of([x.p99_ms for x in self.loads])


def _sweep(
    bare: ServerProcess, service: ServerProcess, work: Workload, runs: Path, s: Settings
) -> list[dict[str, Any]]:
    rows = []
    for connections in s.sweep:
        row: dict[str, Any] = {"connections": connections}
        for name, server in (("bare", bare), ("service", service)):
            got, _ = measure(
                server, work, runs, s, connections=connections, seconds=s.sweep_seconds
            )
            row[f"{name}_rps"], row[f"{name}_p99_ms"] = got.rps, got.p99_ms
        row["ratio"] = row["service_rps"] / row["bare_rps"]
        rows.append(row)
        print(
            f"   sweep c={connections}: bare {row['bare_rps']:.0f} rps, "
            f"service {row['service_rps']:.0f} rps",
            flush=True,
        )
    return rows


def run(s: Settings, tmp: Path) -> Result:
    version = wrk_version()  # fails first, with how to install wrk, if it is missing
    REMEASURED.clear()
    deliveries = run_deliveries()
    work = Workload(tmp, deliveries)
    database = f"sqlite:///{tmp / 'ledger.sqlite3'}"
    environ = service_environ(
        database, private_key=private_key_pem(), extra={"RUNKEYS_WORKER": "external"}
    )
    ledger = Ledger.open(database)
    leased = LeasedRuns(ledger, deliveries)
    bare = serve_bare(tmp / "bare.log", cpus=s.server_cpus, wait=False)
    service = serve_service(environ, tmp / "service.log", cpus=s.server_cpus, wait=False)
    writes = Writes(database, deliveries.repository_id, deliveries.installation_id)
    floor = serve_bare(tmp / "floor.log", cpus=s.server_cpus, wait=False, writes=writes)
    try:
        no_leases = work.runs_file([NO_LEASES_RUN])
        for server in (bare, service, floor):  # warm-up: imports, caches, connection pools
            server.wait_ready()
            if s.warmup:
                measure(server, work, no_leases, s, connections=s.connections, seconds=s.warmup)
        cases = {name: Case(name, [], {}) for name in ("bare", "no_leases", "leases", "floor")}
        for _ in range(s.repeat):  # interleaved, so that a busy moment hits every case
            cases["bare"].add(
                measure(bare, work, no_leases, s, connections=s.connections, seconds=s.seconds)
            )
            cases["no_leases"].add(
                measure(service, work, no_leases, s, connections=s.connections, seconds=s.seconds)
            )
            # Enough runs for every request to name a fresh one, with room to spare (a cold
            # server's first measurement may be slower than the next).
            fastest = max(x.rps for x in cases["no_leases"].loads + cases["leases"].loads)
            needed = math.ceil(max(fastest * 2, RUNS_PER_SECOND) * s.seconds) + 50
            fresh = leased.fresh(work, needed)  # a measurement taken again names new runs
            for name, server in (("leases", service), ("floor", floor)):
                got = cases[name].add(
                    measure(server, work, fresh, s, connections=s.connections, seconds=s.seconds)
                )
                per = leased.queued(leased.last) / max(got.requests, 1)
                cases[name].extra.setdefault("leases_queued_per_request", []).append(per)
        sweep = _sweep(bare, service, work, no_leases, s) if s.sweep else []
    finally:
        for server in (floor, service, bare):
            server.stop()
        ledger.close()
    return _result(s, cases, sweep, deliveries=deliveries, version=version)


def _result(
    s: Settings,
    cases: dict[str, Case],
    sweep: list[dict[str, Any]],
    *,
    deliveries: RunDeliveries,
    version: str,
) -> Result:
    bare = cases["bare"]
    labels = {
        "bare": "bare Flask endpoint (baseline)",
        "no_leases": "runkeys, run with no leases",
        "leases": f"runkeys, run with {LEASES_PER_RUN} leases",
        "floor": "bare Flask + the ledger read and write (reference)",
    }
    rows, targets, headline, summary = [], [], [], []
    for key, case in cases.items():
        ratios = [x.rps / b.rps for x, b in zip(case.loads, bare.loads, strict=True)]
        ratio = Spread.of(ratios)
        rows.append(
            {
                "case": labels[key],
                "rps": case.rps().show(0),
                "p50_ms": case.p50().show(2),
                "p99_ms": case.p99().show(2),
                "ratio": ratio.show(2),
            }
        )
        if key in ("bare", "floor"):
            continue
        target = TARGET_RATIO[key]
        headline.append(
            f"{labels[key]}: {case.rps().median:.0f} req/s = {ratio.median:.2f} x "
            f"the bare endpoint's {bare.rps().median:.0f}; p99 "
            f"{case.p99().median:.1f} ms"
        )
        summary.append(
            Summary(
                f"Webhook intake, {labels[key].removeprefix('runkeys, ')}",
                f"{case.rps().median:.0f} req/s, p99 {case.p99().median:.1f} ms",
                f"bare Flask: {bare.rps().median:.0f} req/s, p99 {bare.p99().median:.1f} ms",
                f"{ratio.median:.2f}",
                f">= {target} x throughput, p99 <= {TARGET_P99_MS:g} ms",
                ratio.median >= target and case.p99().median <= TARGET_P99_MS,
            )
        )
        targets.append(
            Target(
                f"throughput, {labels[key]}",
                f">= {target} x baseline",
                f"{ratio.median:.2f} x",
                ratio.median >= target,
            )
        )
        targets.append(
            Target(
                f"p99 at saturation, {labels[key]}",
                f"<= {TARGET_P99_MS:g} ms",
                f"{case.p99().median:.1f} ms",
                case.p99().median <= TARGET_P99_MS,
            )
        )
    per = cases["leases"].extra.get("leases_queued_per_request", [0.0])
    floor_per = cases["floor"].extra.get("leases_queued_per_request", [0.0])
    summary.append(_against_floor(cases["leases"], cases["floor"], labels["leases"]))
    headline.append(summary[-1].what + f": {summary[-1].ratio} x the reference's throughput")
    notes = [
        f"{s.connections} keep-alive connections (wrk, 1 thread), {s.seconds:g} s per measurement "
        f"after {s.warmup:g} s of warm-up, {s.repeat} interleaved repetitions; "
        "median (min-max) over the repetitions; ratio = requests/s over the baseline's in the "
        "same repetition.",
        f"All servers: gunicorn gthread, {WORKERS} worker x {THREADS} threads (`runkeys serve` "
        "defaults on SQLite), JSON access log; SQLite ledger (WAL); revocation worker off.",
        f"Payload {len(deliveries.body(1)):,} bytes; each request of the 10-lease case recorded "
        "its run's completion, which, applied after the measurement as the worker does, queued "
        f"{min(per):.2f} leases per request (10 = every request named a fresh run); the "
        f"reference's requests, {min(floor_per):.2f}.",
        "The reference (bare Flask + the ledger read and write) answers the 10-lease case's "
        "requests with what they cost the ledger and nothing else; the 10-lease case against "
        f"it: {summary[-1].ratio} x its throughput.",
        "Server CPU time per request (its worker's user + system time over the requests it "
        "answered; the host's other load moves it less than requests/s), median: "
        + ", ".join(f"{labels[k]} {Spread.of(c.cpu_us).median:.0f} us" for k, c in cases.items())
        + ".",
        "Server and wrk "
        + ("pinned: server on CPU 0, wrk on CPU 1." if s.pin else "share all cores (not pinned)."),
        f"Measurements in which one gunicorn worker did more than {LOPSIDED_SHARE:.0%} of the "
        "work (every keep-alive connection on one worker) are taken again, up to "
        f"{MEASURE_ATTEMPTS} times: {len(REMEASURED)} were in this run.",
    ]
    result = Result(
        name="webhook",
        title="Webhook intake: POST /webhook under gunicorn vs a bare Flask endpoint",
        method="Signed `workflow_run` `completed` deliveries, each with its own delivery id, "
        "from wrk on loopback.",
        columns=[
            ("case", "case"),
            ("rps", "requests/s"),
            ("p50_ms", "p50 ms"),
            ("p99_ms", "p99 ms"),
            ("ratio", "throughput vs baseline"),
        ],
        rows=rows,
        targets=targets,
        settings={**s.__dict__, "wrk": version},
        notes=notes,
        headline=headline,
        summary=summary,
        raw={
            "loads": {k: [x.__dict__ for x in c.loads] for k, c in cases.items()},
            "cpu_us_per_request": {k: c.cpu_us for k, c in cases.items()},
            "sweep": sweep,
            "leases_queued_per_request": per,
            "floor_leases_queued_per_request": floor_per,
            "remeasured_busiest_worker_share": REMEASURED,
        },
    )
    if sweep:
        result.notes.append(
            "Concurrency sweep (one measurement each): "
            + "; ".join(
                f"c={r['connections']}: bare {r['bare_rps']:.0f}/s p99 {r['bare_p99_ms']:.1f} ms, "
                f"runkeys {r['service_rps']:.0f}/s p99 {r['service_p99_ms']:.1f} ms"
                for r in sweep
            )
        )
    return result


def _against_floor(leases: Case, floor: Case, label: str) -> Summary:
    """The 10-lease case against the bare endpoint making the same ledger read and write."""
    ratios = [x.rps / f.rps for x, f in zip(leases.loads, floor.loads, strict=True)]
    return Summary(
        f"Webhook intake, {label.removeprefix('runkeys, ')}, against the write it needs",
        f"{leases.rps().median:.0f} req/s, p99 {leases.p99().median:.1f} ms",
        f"bare Flask + the same ledger read and write: {floor.rps().median:.0f} req/s, "
        f"p99 {floor.p99().median:.1f} ms",
        f"{Spread.of(ratios).median:.2f}",
        "informative: what runkeys adds to the ledger write",
        None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    s = QUICK if args.quick else Settings()
    changes: dict[str, Any] = {"pin": args.pin}
    if args.repeat:
        changes["repeat"] = args.repeat
    if args.seconds:
        changes["seconds"] = args.seconds
    if args.connections:
        changes["connections"] = args.connections
    s = Settings(**{**s.__dict__, **changes})
    return run_benchmark("webhook", run, s, args.out)


def _parser() -> argparse.ArgumentParser:
    p = parser("webhook", __doc__ or "")
    p.add_argument("--pin", action="store_true", help="server on CPU 0, wrk on CPU 1")
    p.add_argument("--seconds", type=float, help="length of each measurement")
    p.add_argument("--connections", type=int, help="wrk's keep-alive connections")
    return p


if __name__ == "__main__":
    sys.exit(main())
