"""Prometheus metrics.

Counters and the latency histogram are per process; under several gunicorn workers `runkeys serve`
sets `PROMETHEUS_MULTIPROC_DIR` first and `/metrics` adds them up. Lease counts and the worker's
backlog are read from the ledger when scraped, so every replica reports the same values."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from handler.ledger import Ledger
from handler.ledger.backlog import by_installation
from handler.ledger.completions import pending
from handler.ledger.queue import backlog, count_by_state

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# Repeated on purpose: one declaration per metric, each with its own name, help and labels.
class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.deliveries = Counter(
            "runkeys_webhook_deliveries",
            "Webhook deliveries by event and outcome (queued, pong, ignored, duplicate, bad).",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.signature_failures = Counter(
            "runkeys_webhook_signature_failures",
            "Webhook deliveries refused: missing, malformed or wrong signature.",
            registry=self.registry,
        )
        self.policy_decisions = Counter(
            "runkeys_policy_decisions",
            "Broker requests decided by the policy, by outcome (allow, deny) and deciding rule.",
            ["outcome", "rule"],
            registry=self.registry,
        )
        self.token_failures = Counter(
            "runkeys_oidc_token_failures",
            "API requests refused because their OIDC token was missing or invalid.",
            registry=self.registry,
        )
        self.leases_registered = Counter(
            "runkeys_leases_registered",
            "Leases registered by the action (repeats not counted).",
            registry=self.registry,
        )
        self.revocations = Counter(
            "runkeys_revocations",
            "Revocation attempts by outcome: revoked, retry (failed, will retry), failed (gave "
            "up after repeated failure; alert on this).",
            ["outcome"],
            registry=self.registry,
        )
        self.secret_alerts = Counter(
            "runkeys_secret_alerts",
            "Secret scanning alerts worked, by outcome: retired (leases retired, alert resolved), "
            "no_match, retired_already (the alert left open), retry, failed.",
            ["outcome"],
            registry=self.registry,
        )
        self.revocation_latency = Histogram(
            "runkeys_revocation_latency_seconds",
            "From the moment a lease was queued for retirement to its revocation.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.log_scans = Counter(
            "runkeys_log_scans",
            "Run log scans by outcome: clean, leaked (a key found), no_logs, too_large, "
            "truncated, retry, failed.",
            ["outcome"],
            registry=self.registry,
        )
        self.leaks_in_logs = Counter(
            "runkeys_leaks_in_logs",
            "Keys found in a run's logs by the log scan, by form (as is, base64, hex, in a "
            "URL, URL-encoded, JSON-escaped); alert on any.",
            ["form"],
            registry=self.registry,
        )

        self.pacing = PaceMetrics(self.registry)

    def exposition(self, ledger: Ledger, clock: Callable[[], datetime]) -> bytes:
        if multiprocess_dir():
            registry = CollectorRegistry()
            WorkerFiles(registry)
        else:
            registry = CollectorRegistry()
            registry.register(_Forward(self.registry))
        registry.register(LedgerCollector(ledger, clock))
        return generate_latest(registry)


# Repeated on purpose: one declaration per metric, each with its own name, help and labels.
class PaceMetrics:
    """GitHub's limits per installation, as the pace (`runkeys.github.pacing`) spends them:
    counters (summed over processes), and the primary budget's last known remaining."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "runkeys_github_requests",
            "GitHub calls paced, per installation and kind (read, write); rate(…[1m]) * 60 is "
            "the writes a minute GitHub's secondary limit counts (80).",
            ["installation", "kind"],
            registry=registry,
        )
        self.waits = Counter(
            "runkeys_github_pacing_waits",
            "Calls that waited for one of GitHub's limits, per installation and limit.",
            ["installation", "limit"],
            registry=registry,
        )
        self.wait_seconds = Counter(
            "runkeys_github_pacing_wait_seconds",
            "Seconds calls waited for GitHub's limits, per installation and limit.",
            ["installation", "limit"],
            registry=registry,
        )
        self.refusals = Counter(
            "runkeys_github_rate_limit_refusals",
            "403/429 rate-limit answers GitHub gave all the same, per installation (pacing "
            "should keep this at 0).",
            ["installation"],
            registry=registry,
        )
        self.primary_remaining = Gauge(
            "runkeys_github_primary_remaining",
            "Requests left in the installation's hourly budget, as GitHub last said.",
            ["installation"],
            registry=registry,
            multiprocess_mode="livemin",
        )

    def called(self, installation: object, *, write: bool) -> None:
        self.requests.labels(str(installation), "write" if write else "read").inc()

    def waited(self, installation: object, seconds: float, limit: str) -> None:
        self.waits.labels(str(installation), limit).inc()
        self.wait_seconds.labels(str(installation), limit).inc(seconds)

    def refused(self, installation: object) -> None:
        self.refusals.labels(str(installation)).inc()

    def remaining(self, installation: object, remaining: int) -> None:
        self.primary_remaining.labels(str(installation)).set(remaining)


def serve_apart(address: tuple[str, int], ledger: Ledger, clock: Callable[[], datetime]) -> None:
    """`/metrics` on an address of its own (RUNKEYS_METRICS_BIND): prometheus_client's server,
    in a thread of gunicorn's master, adding up every worker's files and reading the ledger's
    gauges. Started before the workers are forked: each closes its copy of the socket, which
    the master alone answers on."""
    registry = CollectorRegistry()
    WorkerFiles(registry)
    registry.register(LedgerCollector(ledger, clock))
    host, port = address
    server, _ = start_http_server(port, addr=host, registry=registry)
    os.register_at_fork(after_in_child=server.socket.close)


class WorkerFiles(multiprocess.MultiProcessCollector):
    """Every worker's metric files, skipping one still empty: a worker creates its file before
    sizing it, and prometheus_client fails the whole scrape on reading it then
    (https://github.com/prometheus/client_python/issues/1199)."""

    def __init__(self, registry: CollectorRegistry, path: str | None = None) -> None:
        super().__init__(registry, path)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Metric]:
        files = glob.glob(os.path.join(self._path, "*.db"))
        sized = [name for name in files if _size(name) > 0]
        return self.merge(sized, accumulate=True)  # type: ignore[no-any-return,no-untyped-call]


def _size(name: str) -> int:
    try:
        return os.path.getsize(name)
    except FileNotFoundError:  # its worker's files were removed meanwhile
        return 0


class _Forward(Collector):
    """This process's own metrics, inside a registry assembled per scrape."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()


class LedgerCollector(Collector):
    """Gauges read from the ledger at scrape time: the same on every replica."""

    def __init__(self, ledger: Ledger, clock: Callable[[], datetime]) -> None:
        self.ledger = ledger
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        with self.ledger.begin() as conn:
            counts = count_by_state(conn)
            due = backlog(conn, now)
            completions = pending(conn)
            installations = by_installation(conn)
        leases = GaugeMetricFamily("runkeys_leases", "Leases by state.", labels=["state"])
        for state, count in sorted(counts.items()):
            leases.add_metric([state.value], count)
        yield leases
        yield GaugeMetricFamily(
            "runkeys_worker_backlog",
            "Leases due for a revocation attempt and not being worked on.",
            value=due,
        )
        yield GaugeMetricFamily(
            "runkeys_run_completions_pending",
            "Run completions the webhook recorded and no worker has applied yet: their leases "
            "are still active. Growing means no worker is running.",
            value=completions,
        )
        waiting = GaugeMetricFamily(
            "runkeys_retirement_backlog",
            "Leases of each installation queued for retirement (`waiting`) or given up on for "
            "now (`failed`).",
            labels=["installation", "state"],
        )
        oldest = GaugeMetricFamily(
            "runkeys_retirement_oldest_waiting_seconds",
            "How long each installation's oldest lease queued for retirement has waited.",
            labels=["installation"],
        )
        for found in installations:
            label = installation_label(found.installation_id)
            waiting.add_metric([label, "waiting"], found.waiting)
            waiting.add_metric([label, "failed"], found.failed)
            oldest.add_metric([label], found.oldest_age(now))
        yield waiting
        yield oldest


def installation_label(installation_id: int | None) -> str:
    return "unknown" if installation_id is None else str(installation_id)
