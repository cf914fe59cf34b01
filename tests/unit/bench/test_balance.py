"""The webhook benchmark takes a measurement again when one gunicorn worker did nearly all of it
(every keep-alive connection landed on that worker): how it tells."""

from __future__ import annotations

from bench.webhook import LOPSIDED_SHARE, busiest_share


def test_the_busiest_workers_share_of_the_cpu_time_used_in_a_measurement() -> None:
    before = {10: 100, 11: 100}
    assert busiest_share(before, {10: 400, 11: 400}) == 0.5
    lopsided = busiest_share(before, {10: 395, 11: 105})
    assert lopsided is not None
    assert lopsided > LOPSIDED_SHARE
    # A worker that started during the measurement counts from zero.
    assert busiest_share(before, {10: 200, 11: 200, 12: 100}) == 1 / 3


def test_nothing_to_compare_is_no_verdict() -> None:
    assert busiest_share({10: 5}, {10: 50}) is None  # one worker
    assert busiest_share({10: 5, 11: 5}, {10: 5, 11: 5}) is None  # no CPU time used
