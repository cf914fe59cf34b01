"""The ledger at 10,000, 100,000 and 1,000,000 leases, on SQLite and on PostgreSQL: a run's
completion (the webhook's read and record, the worker's queueing) and a sweep of 10,000 expired
leases, as the ledger grows (the baseline is the smallest ledger, measured in the same run).

    .venv/bin/python -m bench.ledger [--quick] [--sizes 10000,100000,1000000]
                                     [--engines sqlite,postgres]

The ledger is filled with a made-up history (`bench.history`) and the code timed is the
service's own; every statement's plan is recorded. Method: docs/benchmarks.md#method."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from bench.common import (
    POSTGRES_ADMIN_URL,
    parser,
    postgres_database,
    postgres_reachable,
    run_benchmark,
)
from bench.history import History
from bench.plans import Plans
from bench.probe import Checkpoint, Probe, timed
from bench.report import Result, Spread, Summary, Target, percentile
from bench.rows import indexes_dropped, load
from handler.ledger import Ledger

PROBE_REPOSITORY = 1_000_000  # one of History's repositories
PROBE_INSTALLATION = 7_000_000


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    engines: tuple[str, ...] = ("sqlite", "postgres")
    lookups: int = 100  # webhook transactions per case and size
    sweep: int = 10_000  # expired leases per sweep
    sweeps: int = 3


QUICK = Settings(sizes=(2_000, 6_000), lookups=10, sweep=300, sweeps=2)


def _load(ledger: Ledger, rows: Iterator[dict[str, Any]]) -> None:
    with indexes_dropped(ledger):
        load(ledger, rows)


@contextmanager
def opened(engine: str, tmp: Path) -> Iterator[Ledger]:
    with ExitStack() as stack:
        if engine == "sqlite":
            url = f"sqlite:///{tmp / 'ledger.sqlite3'}"
        else:
            url = stack.enter_context(postgres_database())
        ledger = Ledger.open(url)
        stack.callback(ledger.close)
        yield ledger


def grow(engine: str, s: Settings, tmp: Path) -> tuple[list[Checkpoint], dict[str, Plans]]:
    now = datetime.now(UTC)
    history = History(now).rows()
    checkpoints: list[Checkpoint] = []
    plans: dict[str, Plans] = {}
    with opened(engine, tmp) as ledger:
        probe = Probe(ledger, now)
        loaded = 0
        for size in s.sizes:
            seconds = timed(lambda: _load(ledger, islice(history, size - loaded)))  # noqa: B023
            loaded = size
            if engine == "postgres":
                with ledger.begin() as conn:  # what autovacuum does for a table growing so
                    conn.exec_driver_sql("ANALYZE leases")
            point = Checkpoint(engine, size, seconds)
            probe.webhook(5)  # warm-up: caches, the pool's connections
            point.webhook_leases, point.webhook_none = probe.webhook(s.lookups)
            point.sweeps = [probe.sweep(s.sweep) for _ in range(s.sweeps)]
            point.poll = [probe.poll() for _ in range(s.lookups)]
            point.gauges = [probe.gauges() for _ in range(5)]
            checkpoints.append(point)
            print(
                f"   {engine} {size:,}: loaded in {seconds:.1f} s; webhook p50 "
                f"{percentile(point.webhook_leases, 50) * 1000:.2f} ms; sweep "
                f"{min(point.sweeps):.2f} s",
                flush=True,
            )
        plans = probe.plans()
    return checkpoints, plans


def _ms(values: Sequence[float], q: float = 50) -> float:
    return percentile(values, q) * 1000


def _rows(points: list[Checkpoint]) -> list[dict[str, Any]]:
    rows = []
    base: dict[str, Checkpoint] = {}
    for p in points:
        first = base.setdefault(p.engine, p)
        sweep = Spread.of(p.sweeps)
        rows.append(
            {
                "engine": "SQLite" if p.engine == "sqlite" else "PostgreSQL",
                "size": p.size,
                "load": f"{p.size / p.load_seconds:,.0f}/s",
                "webhook": f"{_ms(p.webhook_leases):.2f} / {_ms(p.webhook_leases, 99):.2f}",
                "webhook_none": f"{_ms(p.webhook_none):.2f}",
                "webhook_growth": f"{_ms(p.webhook_leases) / _ms(first.webhook_leases):.2f}",
                "sweep": sweep.show(2),
                "sweep_growth": f"{sweep.median / Spread.of(first.sweeps).median:.2f}",
                "poll": f"{_ms(p.poll):.2f}",
                "gauges": f"{_ms(p.gauges):.1f}",
            }
        )
    return rows


def _scans(plans: dict[str, dict[str, Plans]], *, gauges: bool = False) -> list[str]:
    """Whole-table scans of `leases` on the service's paths (or only in the `/metrics` gauges,
    which count every lease by state and cannot do otherwise)."""
    found = []
    for engine, by_work in plans.items():
        for work, got in by_work.items():
            if (work == "metrics gauges") != gauges:
                continue
            for plan in got.scans():
                found.append(f"{engine}, {work}: {plan.statement[:120]}… → {' / '.join(plan.plan)}")
    return found


def _summary(points: list[Checkpoint], s: Settings, indexed: bool) -> list[Summary]:
    lines = []
    for engine in dict.fromkeys(p.engine for p in points):
        mine = [p for p in points if p.engine == engine]
        first, last = mine[0], mine[-1]
        name = "SQLite" if engine == "sqlite" else "PostgreSQL"
        hook, hook0 = _ms(last.webhook_leases), _ms(first.webhook_leases)
        sweep, sweep0 = Spread.of(last.sweeps).median, Spread.of(first.sweeps).median
        target = "index lookups, no table scan (growth: informative)"
        lines += [
            Summary(
                f"Ledger ({name}), a 10-lease run's completion at {last.size:,} leases",
                f"{hook:.2f} ms (p50)",
                f"{first.size:,} leases: {hook0:.2f} ms",
                f"{hook / hook0:.2f}",
                target,
                indexed,
            ),
            Summary(
                f"Ledger ({name}), sweep of {s.sweep:,} expired at {last.size:,} leases",
                f"{sweep:.2f} s",
                f"{first.size:,} leases: {sweep0:.2f} s",
                f"{sweep / sweep0:.2f}",
                target,
                indexed,
            ),
        ]
    return lines


def run(s: Settings, tmp: Path) -> Result:
    points: list[Checkpoint] = []
    plans: dict[str, dict[str, Plans]] = {}
    skipped = []
    for engine in s.engines:
        if engine == "postgres" and not postgres_reachable():
            skipped.append(
                f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: not measured "
                "(set RUNKEYS_BENCH_POSTGRES_URL)"
            )
            continue
        got, plans[engine] = grow(engine, s, tmp)
        points += got
    rows = _rows(points)
    scans = _scans(plans)
    gauge_scans = _scans(plans, gauges=True)
    targets = [
        Target(
            "no whole-table scan of leases on the webhook, sweep or worker paths",
            "index lookups only",
            f"{len(scans)} scans",
            not scans,
        )
    ]
    headline = [
        f"{r['engine']} {r['size']:,}: webhook {r['webhook']} ms (p50 / p99; "
        f"x{r['webhook_growth']} vs the smallest), sweep of {s.sweep:,} {r['sweep']} s "
        f"(x{r['sweep_growth']})"
        for r in rows
    ]
    summary = _summary(points, s, not scans)
    return Result(
        name="ledger",
        title=f"The ledger from {s.sizes[0]:,} to {s.sizes[-1]:,} leases",
        method="A realistic history loaded through the ledger's own schema; the service's own "
        f"code timed at each size: a run's completion — the webhook's read and, for a run with "
        "live leases, its record of the completion, then the worker's queueing of the leases "
        f"({s.lookups} deliveries for runs with 10 live leases, {s.lookups} for runs with none) "
        f"—, a sweep of {s.sweep:,} expired "
        f"leases ({s.sweeps} times), the worker's idle claim, the `/metrics` gauges.",
        columns=[
            ("engine", "engine"),
            ("size", "leases"),
            ("load", "bulk load"),
            ("webhook", "webhook, 10 leases: p50 / p99 ms"),
            ("webhook_none", "webhook, no lease: p50 ms"),
            ("webhook_growth", "webhook vs smallest"),
            ("sweep", f"sweep {s.sweep:,} expired s"),
            ("sweep_growth", "sweep vs smallest"),
            ("poll", "worker idle claim ms"),
            ("gauges", "/metrics gauges ms"),
        ],
        rows=rows,
        targets=targets,
        settings={**s.__dict__},
        notes=[
            "Times are the transactions as the service runs them, commits included (a run with "
            "leases: the webhook's and the worker's, one after the other); sweep = "
            "`Sweeper.sweep(reconcile=False)` (TTL expiry, then pruning of old delivery and "
            "token ids). After each measurement the leases it queued are marked revoked, as the "
            "worker would, so every size starts from the same kind of ledger.",
            "SQLite: one file, WAL, synchronous=NORMAL (the service's settings); no ANALYZE "
            "(the service never runs one). PostgreSQL: default server settings; ANALYZE after "
            "each bulk load (autovacuum's job on a table growing this fast).",
            "The `/metrics` gauges count leases by state over the whole table on every scrape "
            f"({'a table scan' if gauge_scans else 'an index scan'} here): the one figure "
            "that grows with the ledger by design.",
            *skipped,
            *(
                ["Whole-table scans: " + "; ".join(scans)]
                if scans
                else [
                    "Every statement of the webhook, sweep and worker paths uses an index "
                    "(plans in the JSON)."
                ]
            ),
        ],
        headline=headline,
        summary=summary,
        raw={
            "checkpoints": [p.__dict__ for p in points],
            "plans": {
                e: {w: [p.__dict__ for p in got.found] for w, got in by.items()}
                for e, by in plans.items()
            },
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("ledger", __doc__ or "")
    p.add_argument("--sizes", help="comma-separated ledger sizes (default 10000,100000,1000000)")
    p.add_argument("--engines", help="comma-separated: sqlite,postgres (default both)")
    args = p.parse_args(argv)
    s = QUICK if args.quick else Settings()
    changes: dict[str, Any] = {}
    if args.sizes:
        changes["sizes"] = tuple(int(x) for x in args.sizes.split(","))
    if args.engines:
        changes["engines"] = tuple(args.engines.split(","))
    if args.repeat:
        changes["sweeps"] = args.repeat
    s = Settings(**{**s.__dict__, **changes})
    return run_benchmark("ledger", run, s, args.out)


if __name__ == "__main__":
    sys.exit(main())
