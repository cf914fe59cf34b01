"""`runkeys status`: the retirement backlog per installation, from the ledger, and with
`--metrics URL` GitHub's limits as the service's paces spend them, from its `/metrics`
(the paces live in the service's processes; their metrics are the one place they add up)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from handler.ledger import Ledger
from handler.ledger.backlog import InstallationBacklog, by_installation
from handler.ledger.completions import pending
from handler.ledger.queue import backlog, count_by_state
from runkeys.errors import ConfigError

# The pace's metrics (handler/metrics.py `PaceMetrics`), by the field status shows them as.
PACE_METRICS = {
    "runkeys_github_primary_remaining": "primary_remaining",
    "runkeys_github_requests": "requests",
    "runkeys_github_pacing_waits": "waits",
    "runkeys_github_pacing_wait_seconds": "waited_seconds",
    "runkeys_github_rate_limit_refusals": "refusals",
}


@dataclass(frozen=True)
class Status:
    leases: dict[str, int]
    due_now: int
    completions: int
    installations: list[InstallationBacklog]
    now: datetime
    warn_after: float  # seconds

    def behind(self, found: InstallationBacklog) -> bool:
        return found.oldest_age(self.now) > self.warn_after


def read_status(ledger: Ledger, now: datetime, warn_after: float) -> Status:
    with ledger.begin() as conn:
        counts, due = count_by_state(conn), backlog(conn, now)
        completions, installations = pending(conn), by_installation(conn)
    leases = {state.value: n for state, n in counts.items()}
    return Status(leases, due, completions, installations, now, warn_after)


def github_limits(url: str, *, timeout: float = 5.0) -> dict[str, dict[str, float]]:
    """Per installation, what its pace's metrics say: requests (all kinds), waits, seconds
    waited, refusals drawn and, when GitHub said it, the primary budget left."""
    try:
        answer = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise ConfigError("--metrics", f"{url} cannot be read ({type(exc).__name__})") from None
    if answer.status_code != 200:
        raise ConfigError(
            "--metrics",
            f"{url} answered {answer.status_code}",
            fix="name the service's /metrics (RUNKEYS_METRICS_BIND if it has its own address)",
        )
    found: dict[str, dict[str, float]] = defaultdict(dict)
    try:
        families = list(text_string_to_metric_families(answer.text))
    except ValueError:
        raise ConfigError("--metrics", f"{url} is not Prometheus' text format") from None
    for family in families:
        field = PACE_METRICS.get(family.name)
        if field is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_created") or "installation" not in sample.labels:
                continue
            values = found[sample.labels["installation"]]
            values[field] = values.get(field, 0.0) + sample.value
    return dict(found)


def as_json(status: Status, limits: dict[str, dict[str, float]] | None) -> str:
    summary: dict[str, Any] = {
        "leases": status.leases,
        "due_now": status.due_now,
        "run_completions_pending": status.completions,
        "backlog_warn_after_seconds": round(status.warn_after),
        "installations": [
            {
                "installation": b.installation_id,
                "waiting": b.waiting,
                "failed": b.failed,
                "oldest_waiting_seconds": round(b.oldest_age(status.now)),
                "behind": status.behind(b),
            }
            for b in status.installations
        ],
    }
    if limits is not None:
        summary["github"] = limits
    return json.dumps(summary)


def as_text(status: Status, limits: dict[str, dict[str, float]] | None) -> list[str]:
    lines = [
        "leases: " + ", ".join(f"{state} {n}" for state, n in status.leases.items()),
        f"due now: {status.due_now}; run completions not yet applied: {status.completions}",
    ]
    if not status.installations:
        lines.append("retirement backlog: none")
    else:
        lines.append(f"retirement backlog (behind: oldest waiting over {age(status.warn_after)}):")
        lines.append(f"  {'INSTALLATION':<14}{'WAITING':>8}{'FAILED':>8}  OLDEST WAITING")
        for b in status.installations:
            who = "unknown" if b.installation_id is None else str(b.installation_id)
            flag = "  BEHIND" if status.behind(b) else ""
            oldest = age(b.oldest_age(status.now))
            lines.append(f"  {who:<14}{b.waiting:>8}{b.failed:>8}  {oldest}{flag}")
    if limits is not None:
        lines += limits_text(limits)
    return lines


def limits_text(limits: dict[str, dict[str, float]]) -> list[str]:
    if not limits:
        return ["GitHub's limits: no call made yet"]
    lines = [
        "GitHub's limits (since the service started):",
        f"  {'INSTALLATION':<14}{'CALLS':>8}{'WAITS':>8}{'WAITED':>10}{'REFUSED':>9}  PRIMARY LEFT",
    ]
    for who, values in sorted(limits.items()):
        left = values.get("primary_remaining")
        primary = "-" if left is None else str(int(left))
        lines.append(
            f"  {who:<14}{int(values.get('requests', 0)):>8}{int(values.get('waits', 0)):>8}"
            f"{age(values.get('waited_seconds', 0.0)):>10}{int(values.get('refusals', 0)):>9}"
            f"  {primary}"
        )
    return lines


def age(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
