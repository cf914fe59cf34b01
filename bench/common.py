"""What every benchmark's command line shares: `--quick` (a toy size, seconds: the smoke test),
`--repeat`, `--out`; the service's environment; and the PostgreSQL server to use."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TypeVar

from bench.machine import describe
from bench.report import DEFAULT_OUT, Result

POSTGRES_ADMIN_URL = os.environ.get(
    "RUNKEYS_BENCH_POSTGRES_URL",
    os.environ.get("RUNKEYS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)
WEBHOOK_SECRET = "runkeys-bench-webhook-secret"
AUDIENCE = "https://runkeys.bench/service"


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes. Also makes SIGTERM end a benchmark as Ctrl-C does,
    so that its servers are stopped and its databases dropped."""
    signal.signal(signal.SIGTERM, _terminated)
    parsed = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=description)
    parsed.add_argument("--quick", action="store_true", help="a toy size, in seconds (smoke test)")
    parsed.add_argument("--repeat", type=int, help="repetitions of each measurement")
    parsed.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    return parsed


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def workdir(name: str) -> Iterator[Path]:
    """A scratch directory (ledger files, server logs, wrk's inputs): removed when the
    benchmark succeeds, kept to be read when it fails (or with RUNKEYS_BENCH_KEEP=1)."""
    path = Path(tempfile.mkdtemp(prefix=f"runkeys-bench-{name}-"))
    try:
        yield path
    except BaseException:
        print(f"   kept {path} (logs of what failed)", file=sys.stderr)
        raise
    if os.environ.get("RUNKEYS_BENCH_KEEP") != "1":
        shutil.rmtree(path, ignore_errors=True)


S = TypeVar("S")


def run_benchmark(name: str, run: Callable[[S, Path], Result], settings: S, out: Path) -> int:
    """A benchmark's command: run it in its scratch directory, write and print its results,
    say how long it took."""
    started = time.monotonic()
    with workdir(name) as tmp:
        result = run(settings, tmp)
    finish(result, out)
    print(f"   took {time.monotonic() - started:.0f} s")
    return 0


def finish(result: Result, out: Path) -> Result:
    """Record the machine, write JSON and Markdown, print the ratios."""
    result.machine = describe(postgres_url=POSTGRES_ADMIN_URL)
    json_path, md_path = result.write(out)
    result.print_summary()
    print(f"   results: {json_path}, {md_path}")
    return result


def service_environ(
    database_url: str,
    *,
    github_url: str = "http://127.0.0.1:9",  # nothing listens: the service must not call out
    app_id: int = 1,
    private_key: str,
    oidc_issuer: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """A complete configuration of the service, as an operator's environment would give it."""
    return {
        "RUNKEYS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "RUNKEYS_APP_ID": str(app_id),
        "RUNKEYS_PRIVATE_KEY": private_key,
        "RUNKEYS_DATABASE_URL": database_url,
        "RUNKEYS_OIDC_ISSUER": oidc_issuer or f"{github_url}/_services/token",
        "RUNKEYS_OIDC_AUDIENCE": AUDIENCE,
        "GITHUB_API_URL": github_url,
        **(extra or {}),
    }


def postgres_reachable(url: str = POSTGRES_ADMIN_URL) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@contextmanager
def postgres_database(admin_url: str = POSTGRES_ADMIN_URL) -> Iterator[str]:
    """A new, empty PostgreSQL database (a SQLAlchemy URL); dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"rk_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
