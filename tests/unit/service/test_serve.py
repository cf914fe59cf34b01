"""`runkeys serve`'s gunicorn settings and its metrics directory (the process itself is run in
tests/service/test_gunicorn.py)."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.workers.gthread import ThreadWorker  # type: ignore[import-untyped]

from handler.cli import _web_workers
from handler.serve import JsonLogger, ServiceWorker, default_options, prepare_metrics_dir


def test_defaults_fit_a_webhook_receiver() -> None:
    options = default_options(
        bind="127.0.0.1:8080", workers=2, threads=4, timeout=30, log_level="INFO"
    )
    assert options["timeout"] <= 30  # GitHub gives up on a delivery after 10 s
    assert issubclass(options["worker_class"], ThreadWorker)  # gthread
    assert options["preload_app"] is False  # each worker makes its own pool and worker thread
    assert options["logger_class"] is JsonLogger
    assert options["accesslog"] == "-"
    assert options["control_socket_disable"] is True


def test_several_workers_get_a_metrics_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert prepare_metrics_dir(1) is None
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    made = prepare_metrics_dir(2)
    try:
        assert made is not None
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == made
        assert Path(made).is_dir()
        assert list(Path(made).iterdir()) == []
    finally:  # this process's metrics must stay in-process for the other tests
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if made:
            Path(made).rmdir()


def test_a_given_metrics_directory_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert prepare_metrics_dir(4) == str(tmp_path)


@pytest.mark.parametrize(
    ("database", "configured", "given", "expected"),
    [
        ("", "", None, 1),  # the default ledger is a SQLite file
        ("sqlite:////var/lib/runkeys/ledger.sqlite3", "", None, 1),
        ("postgresql://runkeys@db.internal/runkeys", "", None, 2),
        ("postgres://runkeys@db.internal/runkeys", "", None, 2),
        ("sqlite:///./runkeys.sqlite3", "3", None, 3),  # the operator's word wins
        ("postgresql://runkeys@db.internal/runkeys", "3", 1, 1),  # and --workers over it
    ],
)
def test_one_worker_process_on_sqlite_two_on_postgresql_unless_told(
    monkeypatch: pytest.MonkeyPatch,
    database: str,
    configured: str,
    given: int | None,
    expected: int,
) -> None:
    """SQLite has one writer: one process by default, so one embedded revocation worker."""
    monkeypatch.setenv("RUNKEYS_DATABASE_URL", database)
    monkeypatch.setenv("RUNKEYS_WEB_WORKERS", configured)
    assert _web_workers(given) == expected


def test_quitting_never_waits_for_the_thread_pools_lock() -> None:
    """SIGQUIT can land while the main thread is inside `ThreadPoolExecutor.submit`, holding
    the pool's lock: the handler must exit without taking it (gthread's own waited forever)."""
    pool = ThreadPoolExecutor(1)
    worker = ServiceWorker.__new__(ServiceWorker)  # only what the handler touches
    worker.tpool, worker.alive = pool, True
    worker.cfg = SimpleNamespace(worker_int=lambda w: None)
    exited: list[bool] = []

    def quit_() -> None:
        try:
            worker.handle_quit(signal.SIGQUIT, None)
        except SystemExit:
            exited.append(True)

    with pool._shutdown_lock:  # as `submit` holds it
        handler = threading.Thread(target=quit_, daemon=True)
        handler.start()
        handler.join(5)
        held_up = handler.is_alive()
    pool.shutdown()
    assert not held_up
    assert exited == [True]
    assert worker.alive is False
