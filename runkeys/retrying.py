"""How runkeys waits before trying again: one rule for the service's worker, the providers and
the action's clients.

Failures that came together should not retry together, so a wait is "equal jitter" (Vault's
expiration manager): the exponential delay, capped, half of it fixed and half random.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def equal_jitter(
    failures: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after the `failures`-th failure in a row (1, 2, …): base·2^(n-1),
    capped, between half of that and all of it."""
    exponent = min(max(failures - 1, 0), 62)
    delay = min(cap, base * 2.0**exponent)
    return delay / 2 + (rng or _RNG).uniform(0, delay / 2)


_RNG = random.Random()  # noqa: S311 (jitter, not a secret)


@dataclass(frozen=True)
class Retrying:
    """How hard a runner-side client tries a request that failed in a way that may pass (a
    5xx, a dropped connection): a short burst, so a step does not hang on a service that is
    down. The waits double, without jitter: one job's requests are not a crowd."""

    attempts: int = 4
    backoff: float = 0.5  # seconds before the second attempt; doubles after each
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def wait(self, failures: int) -> None:
        """Pause after the `failures`-th failed attempt (1, 2, …)."""
        self.sleep(self.backoff * 2 ** (failures - 1))
