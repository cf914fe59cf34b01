"""`runkeys revoke --lease ID` of a `failed` lease: tried again at once, not at the next slow
retry (`RUNKEYS_WORKER_FAILED_RETRY`, 6 hours), and the history says who asked."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from handler.ledger import Ledger, tables
from handler.ledger.history import history
from handler.ledger.queue import claim_due, finish_failed
from runkeys.cli import main
from tests.service.conftest import GitHub
from tests.service.kit import identity, put, stored


@pytest.fixture
def env(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    return environ


def test_revoking_a_failed_lease_by_id_tries_it_again_now(
    env: dict[str, str], ledger: Ledger, github: GitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    failed, active = put(
        ledger, identity(), github.lease(key_name="BROKEN"), github.lease(key_name="FINE")
    )
    now = datetime.now(UTC)
    with ledger.begin() as conn:
        conn.execute(
            tables.leases.update()
            .where(tables.leases.c.id == failed)
            .values(state="revoking", next_attempt_at=now)
        )
        claim = claim_due(conn, now=now, limit=5, hold=timedelta(minutes=5))
        assert [lease.id for lease in claim.leases] == [failed]
        finish_failed(
            conn,
            failed,
            claim.token,
            now=now,
            error="the connection CI_DB is not configured",
            retry_at=now + timedelta(hours=6),
            give_up=True,
        )
    assert stored(ledger, failed).state.value == "failed"

    code = main(["revoke", "--lease", failed, "--lease", active, "--reason", "CI_DB is back"])
    assert code == 0
    out = capsys.readouterr().out
    assert sorted(json.loads(out)["queued"]) == sorted([failed, active])
    retried = stored(ledger, failed)
    assert retried.state.value == "failed"  # until an attempt succeeds
    assert retried.next_attempt_at is not None
    assert retried.next_attempt_at <= datetime.now(UTC)
    with ledger.begin() as conn:
        last = history(conn, failed)[-1]
        due = claim_due(conn, now=datetime.now(UTC), limit=5, hold=timedelta(minutes=5))
    assert failed in [lease.id for lease in due.leases]  # the worker takes it on its next look
    assert (last.actor, last.action) == ("operator", "queued")
    assert "CI_DB is back" in last.detail
