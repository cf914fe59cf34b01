"""Which ledger the operator's commands use, and that they never make one: a typo in
RUNKEYS_DATABASE_URL, or a command run in another directory with the relative SQLite default,
must be an error naming the ledger, not a fresh empty ledger that shows "(no leases)"."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from handler.ledger import Ledger, tables
from handler.ledger.existing import shown
from handler.ledger.migrations import MIGRATIONS, current_version
from runkeys_sandbox.launch import free_port
from runkeys_sandbox.server.sandbox import Sandbox
from runkeys_sandbox.server.state import App
from tests.service.conftest import make_environ, postgres_database
from tests.service.kit import run_cli

COMMANDS = [
    ["leases"],
    ["leases", "--json", "--state", "failed"],
    ["revoke", "--lease", "0123456789abcdef"],
    ["revoke", "--all", "--repository", "octo/app"],
    ["sweep", "--no-reconcile"],
    ["worker", "--once"],
    ["status"],
]
IDS = [" ".join(c) for c in COMMANDS]
FIX = "start `runkeys serve` once to create the ledger, or set RUNKEYS_DATABASE_URL"


@pytest.fixture
def configure(sandbox: tuple[Sandbox, App], monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A complete configuration in the environment; each test says which ledger."""
    for key, value in make_environ(*sandbox, "sqlite:///unset").items():
        monkeypatch.setenv(key, value)
    return monkeypatch


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_a_missing_sqlite_ledger_is_named_and_never_made(
    configure: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    path = tmp_path / "ledgr.sqlite3"  # one letter off the service's ledger.sqlite3
    configure.setenv("RUNKEYS_DATABASE_URL", f"sqlite:///{path}")
    code, out, err = run_cli(capsys, *command)
    assert (code, out) == (1, "")
    assert f"There is no ledger at sqlite:///{path}: no such file" in err
    assert FIX in err
    assert list(tmp_path.iterdir()) == []  # no file, no -lock, -wal or -shm beside it


def test_the_relative_default_is_named_with_its_directory(
    configure: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sqlite:///./runkeys.sqlite3` is wherever the command runs: say where that was."""
    configure.delenv("RUNKEYS_DATABASE_URL")
    configure.chdir(tmp_path)
    code, _, err = run_cli(capsys, "leases")
    assert code == 1
    assert f"There is no ledger at sqlite:///{tmp_path.resolve()}/runkeys.sqlite3" in err
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_file_that_is_not_a_ledger_is_left_as_it_was(
    configure: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    db.close()
    before = path.read_bytes()
    configure.setenv("RUNKEYS_DATABASE_URL", f"sqlite:///{path}")
    for command in COMMANDS:
        code, _, err = run_cli(capsys, *command)
        assert code == 1
        assert f"The database at sqlite:///{path} holds no runkeys ledger (no schema)" in err
    assert path.read_bytes() == before  # no tables added, not switched to WAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite3"]


def test_an_empty_postgres_database_is_refused_and_left_empty(
    configure: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with postgres_database() as url:
        parsed = make_url(url)
        password = "pw:@/%-never-shown"  # trust auth: libpq is given it, nobody asks for it
        configure.setenv(
            "RUNKEYS_DATABASE_URL",
            parsed.set(drivername="postgresql", password=password).render_as_string(False),
        )
        expected = f"postgresql+psycopg://postgres:***@127.0.0.1:5432/{parsed.database}"
        for command in COMMANDS:
            code, out, err = run_cli(capsys, *command)
            assert code == 1
            assert f"The database at {expected} holds no runkeys ledger (no schema)" in err
            assert FIX in err
            assert "never-shown" not in out + err
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            made = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        assert made == []


def test_an_unreachable_postgres_is_named_without_its_password(
    configure: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there
    configure.setenv("RUNKEYS_DATABASE_URL", f"postgresql://ops:s3cr%40t@127.0.0.1:{port}/rk")
    code, out, err = run_cli(capsys, "leases")
    assert code == 1
    assert (
        f"The ledger at postgresql+psycopg://ops:***@127.0.0.1:{port}/rk cannot be opened "
        "(OperationalError)"
    ) in err
    assert "s3cr" not in out + err


def test_each_command_names_the_ledger_it_uses(
    env: dict[str, str], ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """On stderr, so `--json` output stays JSON: a line, or a JSON log line for the commands
    that log (sweep, worker)."""
    expected = env["RUNKEYS_DATABASE_URL"]  # absolute, no password: shown as it is
    code, out, err = run_cli(capsys, "leases", "--json")
    assert (code, out) == (0, "")
    assert err.splitlines()[0] == f"runkeys: ledger {expected}"
    code, out, err = run_cli(capsys, "sweep", "--no-reconcile")
    assert code == 0
    logged = [json.loads(line) for line in err.splitlines()]
    assert {"message": "ledger opened", "ledger": expected}.items() <= logged[0].items()


def test_a_password_in_the_query_is_hidden_too() -> None:
    assert shown("postgresql+psycopg://u:pw1@db:5432/rk?password=pw2&sslmode=require") == (
        "postgresql+psycopg://u:***@db:5432/rk?password=***&sslmode=***"
    )


def test_an_older_schema_is_migrated_by_the_worker_and_refused_by_a_read(
    configure: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sweep` and `worker` run the service's code, which needs the current schema: they
    migrate as `serve` does. `leases` and `revoke` change no schema behind the service."""
    path = tmp_path / "ledger.sqlite3"
    url = f"sqlite:///{path}"
    older = MIGRATIONS[:-1]
    engine = create_engine(url)
    with engine.begin() as conn:
        tables.schema_migrations.create(conn)
        for step in older:
            step.apply(conn)
            conn.execute(
                tables.schema_migrations.insert().values(
                    version=step.version, name=step.name, applied_at=datetime.now(UTC)
                )
            )
    configure.setenv("RUNKEYS_DATABASE_URL", url)
    for command in (["leases"], ["revoke", "--lease", "0123456789abcdef"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 1
        assert (
            f"The ledger at {url} has schema version {older[-1].version}; "
            f"this runkeys needs {MIGRATIONS[-1].version}"
        ) in err
    with engine.connect() as conn:
        assert current_version(conn) == older[-1].version
    assert run_cli(capsys, "sweep", "--no-reconcile")[0] == 0
    with engine.connect() as conn:
        assert current_version(conn) == MIGRATIONS[-1].version
    engine.dispose()
    assert run_cli(capsys, "leases")[0] == 0
