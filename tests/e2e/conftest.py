"""One world per ledger engine for the module: the sandbox GitHub with the App, PostgreSQL's
provider roles, and `runkeys serve` on SQLite or on PostgreSQL. Each test opens pull requests
of its own repositories in it. When the module is done, the service is stopped, every byte it
and the tests' processes produced is scanned one last time, and no minted role may be left."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runkeys_sandbox.server.sandbox import Sandbox
from tests.e2e.world import Postgres, World, ledger_database
from tests.service.served import Served


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    engine: str = request.param
    tmp = tmp_path_factory.mktemp(f"e2e-{engine}")
    with (
        Sandbox() as sandbox,
        Postgres.prepared() as postgres,
        ledger_database(engine, tmp) as ledger_url,
    ):
        made = World(engine, tmp, sandbox, sandbox.add_app(), postgres, ledger_url)
        made.service = Served(made.service_environ(), tmp / "service.log")
        try:
            yield made
            made.assert_log_scans()
        finally:
            made.service.stop()
        made.scan()
        assert postgres.members() == [], "minted roles were left behind"
