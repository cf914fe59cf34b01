"""`runkeys serve`: the app under gunicorn (its `BaseApplication`), with defaults fit for a
webhook receiver: threaded workers, a 30 s timeout (GitHub gives up after 10 s), JSON logs, and
an access log of method, path, status, size and time, with what the view did (a webhook
delivery's event, outcome and leases queued) — never a body or a query string.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
from gunicorn.glogging import Logger  # type: ignore[import-untyped]
from gunicorn.workers.base import Worker  # type: ignore[import-untyped]
from gunicorn.workers.gthread import ThreadWorker  # type: ignore[import-untyped]

from handler.logs import ACCESS_FIELDS, JsonFormatter, event, logger
from handler.policy import PolicyError, parse_policy
from runkeys.errors import ConfigError

_log = logger("serve")


class JsonLogger(Logger):  # type: ignore[misc]
    """gunicorn's logs as JSON lines; the access line built field by field."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: Mapping[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        fields = {
            "remote": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),  # no query string: nothing secret goes there anyway
            "status": int(str(resp.status).split()[0]),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "delivery": environ.get("HTTP_X_GITHUB_DELIVERY"),
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            **environ.get(ACCESS_FIELDS, {}),  # what the view did (a delivery's outcome …)
        }
        self.access_log.info("request", extra={"fields": fields})


def _child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess  # noqa: PLC0415 (only in that mode)

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


class ServiceWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker, stopped by its master alone, and never deadlocked by it.

    Ctrl-C sends SIGINT to the whole group and the master then sends each worker SIGQUIT;
    gthread's handler is not reentrant, so a worker ignores SIGINT and a repeated SIGQUIT is a
    no-op. The handler never takes the thread pool's lock either: it runs on the main thread,
    possibly inside `ThreadPoolExecutor.submit`, which holds that lock, so gthread's
    `tpool.shutdown()` there would wait forever. `SystemExit` unwinds `submit` instead, and at
    exit Python stops the pool's threads as `shutdown` would have."""

    def init_signals(self) -> None:
        super().init_signals()
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def handle_quit(self, sig: int, frame: Any) -> None:
        if getattr(self, "_quitting", False):
            return
        self._quitting = True
        Worker.handle_quit(self, sig, frame)  # gthread's, minus its `tpool.shutdown()`


def default_options(
    *, bind: str, workers: int, threads: int, timeout: int, log_level: str
) -> dict[str, Any]:
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": ServiceWorker,
        "threads": threads,
        "timeout": timeout,
        "graceful_timeout": timeout,
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": log_level.lower(),
        "logger_class": JsonLogger,
        "child_exit": _child_exit,
        "limit_request_line": 4094,
        "limit_request_fields": 100,
        "preload_app": False,  # each worker builds its own app, ledger pool and worker thread
        # gunicorn ≥ 25 opens a control socket at a fixed path in $HOME by default: two services
        # on one host would fight over it, and nothing here needs it.
        "control_socket_disable": True,
    }


def prepare_metrics_dir(workers: int, *, apart: bool = False) -> str | None:
    """With several processes, metrics go to files that `/metrics` adds up; this must happen
    before any process imports prometheus_client. `apart`: `/metrics` is answered by the
    master (RUNKEYS_METRICS_BIND), which reads even a single worker's counters from files."""
    if (workers <= 1 and not apart) or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    path = tempfile.mkdtemp(prefix="runkeys-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def serve_metrics_apart(address: tuple[str, int], bind: str, database_url: str) -> None:
    """`/metrics` on RUNKEYS_METRICS_BIND, from this process (the master-to-be), before any
    worker is forked; an address it cannot listen on stops start-up, naming the setting."""
    from handler.ledger import Ledger  # noqa: PLC0415 (after the metrics directory is set)
    from handler.metrics import serve_apart  # noqa: PLC0415
    from handler.service import utc_now  # noqa: PLC0415

    host, port = address
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if shown == bind:
        raise ConfigError(
            "RUNKEYS_METRICS_BIND",
            f"is {shown}, the address the service itself binds",
            fix="give /metrics an address (a port) of its own",
        )
    ledger = Ledger.open(database_url, migrate_schema=False)
    try:
        serve_apart(address, ledger, utc_now)
    except OSError as exc:
        ledger.close()
        raise ConfigError(
            "RUNKEYS_METRICS_BIND", f"cannot listen on {shown} ({exc.strerror or exc})"
        ) from None


class PolicySnapshot:
    """The policy the workers load: a copy of RUNKEYS_POLICY_FILE the master made once the
    text parsed. On SIGHUP gunicorn replaces every worker; the master first reads the file
    again, and an invalid one leaves the copy, the policy in force, as it was (a worker that
    loaded a broken file would fail to boot and stop the whole service)."""

    def __init__(self, source: str) -> None:
        self.source = Path(source)
        self.directory = Path(tempfile.mkdtemp(prefix="runkeys-policy-"))
        self.path = self.directory / "policy.yml"
        self.owner = os.getpid()  # forked workers leave through the same code: not theirs
        problem = self.refresh()
        if problem is not None:
            self.remove()
            raise ConfigError("RUNKEYS_POLICY_FILE", problem.cause, fix=problem.fix)

    def refresh(self) -> PolicyError | None:
        """Copy the file if it parses (the text checked is the text copied); else its error."""
        try:
            text = self.source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return PolicyError(f"cannot read the policy {self.source}: {exc}")
        try:
            parse_policy(text, str(self.source))
        except PolicyError as exc:
            return exc
        fresh = self.directory / ".policy.yml.new"
        fresh.write_text(text, encoding="utf-8")
        os.replace(fresh, self.path)  # atomic: a worker starting now reads one or the other
        return None

    def remove(self) -> None:
        if os.getpid() == self.owner:
            shutil.rmtree(self.directory, ignore_errors=True)


class ServiceApplication(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: Mapping[str, Any], policy: PolicySnapshot | None = None) -> None:
        self.options = dict(options)
        self.policy = policy
        super().__init__()

    def reload(self) -> None:
        """SIGHUP, in the master, before the new workers start: the policy is read again."""
        if self.policy is not None:
            problem = self.policy.refresh()
            if problem is None:
                event(_log, "policy reloaded", policy=str(self.policy.source))
            else:
                event(
                    _log,
                    "policy not reloaded; the policy in force is kept",
                    level=logging.ERROR,
                    policy=str(self.policy.source),
                    line=problem.line,
                    reason=problem.cause,
                )
        super().reload()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # skip what an older gunicorn does not know
                self.cfg.set(key, value)

    def load(self) -> Any:
        from handler.app import create_app  # noqa: PLC0415 (in the worker, after fork)

        return create_app()
