"""The benchmark's references: the bare endpoint, and the one making a run completion's ledger
read and write with runkeys' own ledger code (what a delivery with leases cannot do without)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from bench.bare import Writes, create_bare_app
from bench.rows import lease_row, load
from handler.ledger import Ledger, tables
from handler.ledger.completions import apply_completions, pending

REPOSITORY, INSTALLATION, RUN = 1296269, 4200001, 10_000_000


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = Ledger.open(url)
    rows = (
        lease_row(
            repository_id=REPOSITORY,
            repository="octo-org/app",
            installation_id=INSTALLATION,
            owner_id=1,
            run_id=RUN,
            issued_at=datetime.now(UTC),
            ttl=timedelta(hours=1),
            key_name=f"KEY_{k}",
            environment=None,
        )
        for k in range(10)
    )
    load(ledger, rows)
    ledger.close()
    return url


def _post(client: FlaskClient, run: int) -> dict[str, object]:
    answer = client.post("/webhook", data=b"{}", headers={"X-Bench-Run": str(run)})
    assert answer.status_code == 200
    body: dict[str, object] = answer.get_json()
    return body


def snapshot(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of the ledger."""
    ledger = Ledger.open(url, migrate_schema=False)
    try:
        with ledger.begin() as conn:
            return {
                table.name: sorted(map(tuple, conn.execute(select(table)).all()), key=repr)
                for table in tables.metadata.sorted_tables
            }
    finally:
        ledger.close()


def test_the_bare_endpoint_does_none_of_the_ledger_work(url: str) -> None:
    """The baseline answers a run with ten active leases as the service would, and leaves the
    ledger as it was; the same request to the reference changes it (so the snapshot would see
    a write)."""
    before = snapshot(url)
    assert len(before["leases"]) == 10
    bare = create_bare_app().test_client()
    assert _post(bare, RUN) == {"outcome": "queued", "queued": 0}
    assert snapshot(url) == before
    reference = create_bare_app(Writes(url, REPOSITORY, INSTALLATION)).test_client()
    assert _post(reference, RUN) == {"outcome": "queued", "queued": 10}
    assert snapshot(url) != before


def test_the_reference_makes_a_run_completions_read_and_write(url: str) -> None:
    client = create_bare_app(Writes(url, REPOSITORY, INSTALLATION)).test_client()
    assert _post(client, RUN + 1) == {"outcome": "queued", "queued": 0}  # no leases: no write
    ledger = Ledger.open(url)
    try:
        with ledger.begin() as conn:
            assert pending(conn) == 0
        assert _post(client, RUN) == {"outcome": "queued", "queued": 10}
        with ledger.begin() as conn:
            assert pending(conn) == 1
            assert len(apply_completions(conn)) == 10  # the row the worker would apply
    finally:
        ledger.close()
