"""A ledger's history, made up but shaped like a real one: 90 days of workflow runs across a few
hundred repositories (a few busy, most quiet), each run with 1-10 leases; almost all of them
retired long ago, the last couple of hours' still live.

Runs come in random time order, so the first N leases of the stream are a fair sample of the
whole history at every N: a ledger of 10,000 and one of 1,000,000 differ in size, not shape.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bench.rows import lease_row, sibling
from runkeys.leases import LeaseState, Lifetime


class Weighted:
    """Values drawn by weight (cumulative weights computed once: this runs a million times)."""

    def __init__(self, *weighted: tuple[Any, float]) -> None:
        self.values = [v for v, _ in weighted]
        self.cumulative = list(itertools.accumulate(w for _, w in weighted))

    def pick(self, rng: random.Random) -> Any:
        return rng.choices(self.values, cum_weights=self.cumulative)[0]


HISTORY = timedelta(days=90)
LIVE_WINDOW = timedelta(hours=2)  # runs this young may still be running
PROVIDERS = Weighted(
    ("random", 40),
    ("postgres", 25),
    ("github-token", 15),
    ("deploy-key", 10),
    ("mysql", 5),
    ("redis", 5),
)
TTLS = Weighted(
    (timedelta(minutes=30), 15),
    (timedelta(hours=1), 50),
    (timedelta(hours=2), 15),
    (timedelta(hours=6), 15),
    (timedelta(hours=24), 5),
)
LEASES_PER_RUN = Weighted((1, 30), (2, 25), (3, 15), (4, 10), (5, 8), (10, 12))
LIFETIMES = Weighted((Lifetime.RUN, 60), (Lifetime.JOB, 25), (Lifetime.PR, 15))
WHERE = Weighted(("environment", 70), ("none", 20), ("repository", 10))
ATTEMPTS = Weighted((1, 90), (2, 8), (3, 2))


@dataclass(frozen=True)
class Repo:
    id: int
    name: str
    owner_id: int
    installation_id: int


def repositories(count: int, rng: random.Random) -> tuple[list[Repo], list[float]]:
    """`count` repositories in about count/4 organizations, with Zipf-like activity."""
    repos = []
    for index in range(count):
        org = index // 4
        repos.append(
            Repo(1_000_000 + index, f"org-{org}/repo-{index}", 500_000 + org, 7_000_000 + org)
        )
    weights = [1 / (rank + 1) for rank in range(count)]
    rng.shuffle(weights)
    return repos, weights


class History:
    """An endless stream of lease rows, run by run, as of `now`."""

    def __init__(self, now: datetime, *, seed: int = 1, repos: int = 400) -> None:
        self.now = now
        self.rng = random.Random(seed)
        repos_, weights = repositories(repos, self.rng)
        self.repos = Weighted(*zip(repos_, weights, strict=True))
        self.next_run = 5_000_000_000

    def rows(self) -> Iterator[dict[str, Any]]:
        while True:
            yield from self.run()

    def run(self) -> list[dict[str, Any]]:
        rng = self.rng
        repo: Repo = self.repos.pick(rng)
        self.next_run += rng.randint(1, 50)
        issued = self.now - HISTORY * rng.random()
        lifetime = LIFETIMES.pick(rng)
        pr = rng.randint(1, 5000) if lifetime is Lifetime.PR else None
        environment = f"ci-pr-{pr}" if pr else f"ci-run-{self.next_run}"
        where = WHERE.pick(rng)
        ttl = TTLS.pick(rng)
        live = self.now - issued < LIVE_WINDOW and rng.random() < 0.6
        state, retired = self._fate(issued, ttl, live)
        if live and issued + ttl < self.now + timedelta(minutes=30):
            issued = self.now - timedelta(minutes=rng.randint(1, 20))  # still well within TTL
            ttl = max(ttl, timedelta(hours=1))
        first = lease_row(
            repository_id=repo.id,
            repository=repo.name,
            installation_id=repo.installation_id,
            owner_id=repo.owner_id,
            run_id=self.next_run,
            run_attempt=ATTEMPTS.pick(rng),
            pr_number=pr,
            lifetime=lifetime,
            provider=PROVIDERS.pick(rng),
            key_name="KEY_0",
            environment=environment if where == "environment" else None,
            repository_secret=where == "repository",
            issued_at=issued,
            ttl=ttl,
            state=state,
            retired_at=retired,
            rng=rng,
        )
        rows = [first] + [
            sibling(first, f"KEY_{k}", rng) for k in range(1, LEASES_PER_RUN.pick(rng))
        ]
        if state in (LeaseState.FAILED, LeaseState.REVOKING):  # not due yet: backing off
            for row in rows:
                row["next_attempt_at"] = self.now + timedelta(minutes=rng.uniform(5, 360))
        return rows

    def _fate(
        self, issued: datetime, ttl: timedelta, live: bool
    ) -> tuple[LeaseState, datetime | None]:
        if live:
            return LeaseState.ACTIVE, None
        roll = self.rng.random()
        if roll < 0.001:
            return LeaseState.FAILED, None  # retried every 6 h, forever
        if roll < 0.0015:
            return LeaseState.REVOKING, None  # backing off
        return LeaseState.REVOKED, issued + ttl * self.rng.uniform(0.05, 1.0)
