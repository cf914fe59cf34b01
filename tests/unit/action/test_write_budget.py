"""`WriteBudget`: at most 80 content-creating requests a minute (GitHub's secondary limit), by
waiting rather than failing. The clock is the only thing faked."""

from __future__ import annotations

from runkeys.github.secrets import WriteBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_eighty_writes_a_minute_then_it_waits_for_the_oldest_to_age_out() -> None:
    clock = Clock()
    budget = WriteBudget(clock=clock, sleep=clock.sleep)
    for _ in range(80):
        budget.spend()
    assert clock.slept == []
    clock.now = 15.0
    budget.spend()  # the 81st within the minute waits until the first is a minute old
    assert clock.slept == [45.0]
    assert clock.now == 60.0
    budget.spend()  # every write of t=0 has aged out now
    assert clock.slept == [45.0]


def test_a_steady_pace_never_waits() -> None:
    clock = Clock()
    budget = WriteBudget(limit=3, window=60, clock=clock, sleep=clock.sleep)
    for _ in range(30):
        budget.spend()
        clock.now += 20.0
    assert clock.slept == []


def test_no_window_ever_holds_more_than_the_limit() -> None:
    clock = Clock()
    budget = WriteBudget(limit=5, window=10, clock=clock, sleep=clock.sleep)
    times = []
    for step in range(40):
        clock.now += 0.7 if step % 3 else 0.1
        budget.spend()
        times.append(clock.now)
    for start in times:
        assert sum(1 for t in times if start <= t < start + 10) <= 5
