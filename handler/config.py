"""The service's settings, 12-factor: everything comes from the environment, and a missing or
malformed setting stops start-up with a `ConfigError` that names it.

Each command reads only what it needs: `runkeys leases` needs a database, not the App's key.
"""

from __future__ import annotations

import ipaddress
import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from runkeys.connections import Connection, load_connections
from runkeys.durations import parse_duration
from runkeys.errors import ConfigError
from runkeys.github.pacing import Limits
from runkeys.github.session import DEFAULT_API_URL, AppCredentials, GitHubConfig
from runkeys.oidc import GITHUB_ISSUER

DOCS = "docs/service.md, section 'Configuration'"
DEFAULT_DATABASE_URL = "sqlite:///./runkeys.sqlite3"
# GitHub does not deliver larger payloads:
# https://docs.github.com/webhooks/webhook-events-and-payloads#payload-cap
GITHUB_MAX_PAYLOAD = 25 * 1024 * 1024
# A body on /v1: 100 leases (a spec's most) of the usual shape are ≈50 KiB, and this leaves
# room for provider parameters. A token is checked only after the body is within it.
API_MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class WorkerSettings:
    """How revocation work is claimed, retried and given up on (never for good)."""

    embedded: bool = True  # a worker thread inside each service process
    poll_interval: float = 1.0  # seconds between looks at the queue when it was empty
    batch_size: int = 20
    # A live worker extends its claim every third of this (its heartbeat); a dead one's lapses.
    claim_timeout: timedelta = timedelta(seconds=30)
    max_attempts: int = 8  # failures before a lease is marked `failed` (and retried slowly)
    backoff_base: timedelta = timedelta(seconds=10)
    backoff_max: timedelta = timedelta(minutes=30)
    failed_retry: timedelta = timedelta(hours=6)  # how often a `failed` lease is tried again
    sweep_interval: timedelta = timedelta(minutes=1)
    reconcile_interval: timedelta = timedelta(minutes=10)  # per run, asking GitHub its status
    # The sweeper logs a warning for an installation whose oldest queued retirement is older.
    backlog_warn_after: timedelta = timedelta(minutes=15)
    # GitHub's secondary limit on content writes:
    # https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits
    github_writes_per_minute: int = 80
    # How much faster GitHub's rate-limit time runs than the clock: 1 on GitHub; a stand-in
    # that compresses time (runkeys sandbox --time-factor) for benchmarks needs the same here.
    github_time_factor: float = 1.0

    def github_limits(self) -> Limits:
        """The limits each installation's GitHub calls are paced to (`runkeys.github.pacing`)."""
        limits = Limits(writes_per_minute=self.github_writes_per_minute)
        return limits.compressed(self.github_time_factor)


@dataclass(frozen=True)
class LogScanSettings:
    """The scan of a completed run's logs for its keys (`handler.logscan`)."""

    enabled: bool = True  # RUNKEYS_LOG_SCAN
    # The archive is refused above this; its text is scanned up to this much, the rest is not.
    max_bytes: int = 100 * 1024 * 1024  # RUNKEYS_LOG_SCAN_MAX_BYTES
    delete_leaked: bool = False  # RUNKEYS_DELETE_LEAKED_LOGS: delete a run's logs on a finding
    # GitHub may answer 404 for a while after the run completed: how long to keep asking.
    give_up_after: int = 6  # attempts, backed off like revocations (RUNKEYS_LOG_SCAN_ATTEMPTS)


@dataclass(frozen=True)
class ServiceConfig:
    database_url: str = DEFAULT_DATABASE_URL
    webhook_secret: str = field(default="", repr=False)
    github: GitHubConfig | None = None
    oidc_issuer: str = GITHUB_ISSUER
    oidc_audience: str = ""
    max_ttl: timedelta = timedelta(hours=24)
    connections: Mapping[str, Connection] = field(default_factory=dict)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    webhook_max_bytes: int = GITHUB_MAX_PAYLOAD
    api_max_bytes: int = API_MAX_BYTES
    # How long a repository GitHub says lacks the App is taken at its word.
    not_installed_ttl: timedelta = timedelta(seconds=60)
    log_level: str = "INFO"
    metrics_bind: tuple[str, int] | None = None  # `/metrics` there only (`runkeys serve`)
    # Broker mode's policy (RUNKEYS_POLICY_FILE), checked here; None: `/v1/keys` mints nothing.
    policy_file: str | None = None
    log_scan: LogScanSettings = field(default_factory=LogScanSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ServiceConfig:
        """Everything the web service needs; refuses to start without any of it."""
        return cls(
            database_url=database_url(environ),
            webhook_secret=webhook_secret(environ),
            github=github_config(environ),
            oidc_issuer=_url(environ, "RUNKEYS_OIDC_ISSUER", GITHUB_ISSUER),
            oidc_audience=_required(environ, "RUNKEYS_OIDC_AUDIENCE"),
            max_ttl=_duration(environ, "RUNKEYS_MAX_TTL", timedelta(hours=24)),
            connections=load_connections(environ),
            worker=worker_settings(environ),
            webhook_max_bytes=_int(environ, "RUNKEYS_WEBHOOK_MAX_BYTES", GITHUB_MAX_PAYLOAD, 1024),
            api_max_bytes=_int(environ, "RUNKEYS_API_MAX_BYTES", API_MAX_BYTES, 1024),
            not_installed_ttl=_duration(
                environ, "RUNKEYS_NOT_INSTALLED_TTL", timedelta(seconds=60)
            ),
            log_level=log_level(environ),
            metrics_bind=metrics_bind(environ),
            policy_file=policy_file(environ),
            log_scan=log_scan_settings(environ),
        )

    # Repeated on purpose: a smaller set of the same readers than from_env, for the worker.
    @classmethod
    def for_worker(cls, environ: Mapping[str, str]) -> ServiceConfig:
        """What `runkeys worker` and `runkeys sweep` need: the ledger, GitHub, connections."""
        return cls(
            database_url=database_url(environ),
            github=github_config(environ),
            connections=load_connections(environ),
            worker=worker_settings(environ),
            log_level=log_level(environ),
            log_scan=log_scan_settings(environ),
        )

    @classmethod
    def for_ledger(cls, environ: Mapping[str, str]) -> ServiceConfig:
        """What `runkeys leases` and `runkeys revoke` need: the ledger only."""
        return cls(database_url=database_url(environ), log_level=log_level(environ))


def policy_file(environ: Mapping[str, str]) -> str | None:
    """The policy's path, once it loaded: an invalid policy stops start-up naming its line."""
    from handler.policy import PolicyStore  # noqa: PLC0415 (the policy loads YAML and msgspec)

    store = PolicyStore.from_env(environ)
    return None if store is None else str(store.path)


def webhook_secret(environ: Mapping[str, str]) -> str:
    # Fail closed: without a secret every delivery would have to be trusted or refused.
    return _required(environ, "RUNKEYS_WEBHOOK_SECRET", strip=False)


def database_url(environ: Mapping[str, str]) -> str:
    raw = environ.get("RUNKEYS_DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            "RUNKEYS_DATABASE_URL",
            "is not a database URL",
            fix="use sqlite:///path/to/file.sqlite3 or postgresql://user:password@host/dbname",
            docs=DOCS,
        ) from None
    return normalize_database_url(url).render_as_string(hide_password=False)


def normalize_database_url(url: URL) -> URL:
    """SQLite as it is; PostgreSQL always through psycopg 3. Anything else is refused."""
    backend = url.get_backend_name()
    if backend == "sqlite" and url.drivername in ("sqlite", "sqlite+pysqlite"):
        if not url.database or url.database == ":memory:":
            raise ConfigError(
                "RUNKEYS_DATABASE_URL",
                "names an in-memory SQLite database, which each process would see empty",
                fix="name a file: sqlite:///./runkeys.sqlite3",
                docs=DOCS,
            )
        return url
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    raise ConfigError(
        "RUNKEYS_DATABASE_URL",
        f"uses {url.drivername!r}; the ledger runs on SQLite or PostgreSQL",
        fix="use sqlite:///… or postgresql://…",
        docs=DOCS,
    )


def github_config(environ: Mapping[str, str]) -> GitHubConfig:
    app_id = _required(environ, "RUNKEYS_APP_ID")
    if not app_id.isdigit():
        raise ConfigError(
            "RUNKEYS_APP_ID", "must be the App's numeric id", fix="see the App's settings page"
        )
    return GitHubConfig(
        api_url=_url(environ, "GITHUB_API_URL", DEFAULT_API_URL),
        app=AppCredentials(app_id=app_id, private_key=private_key(environ)),
    )


def private_key(environ: Mapping[str, str]) -> str:
    inline = environ.get("RUNKEYS_PRIVATE_KEY", "")
    path = environ.get("RUNKEYS_PRIVATE_KEY_FILE", "").strip()
    if inline.strip() and path:
        raise ConfigError(
            "RUNKEYS_PRIVATE_KEY",
            "and RUNKEYS_PRIVATE_KEY_FILE are both set",
            fix="set only one of them",
            docs=DOCS,
        )
    setting = "RUNKEYS_PRIVATE_KEY_FILE" if path else "RUNKEYS_PRIVATE_KEY"
    if path:
        try:
            pem = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(setting, f"cannot be read ({exc.strerror})", docs=DOCS) from None
    else:
        pem = inline.replace("\\n", "\n")  # a PEM squeezed onto one line by a .env file
    if not pem.strip():
        raise ConfigError(
            "RUNKEYS_PRIVATE_KEY",
            "is not set",
            fix="set RUNKEYS_PRIVATE_KEY (the App's private key, PEM) or RUNKEYS_PRIVATE_KEY_FILE",
            docs=DOCS,
        )
    try:
        # Parsing is the check: GitHub checks our signatures anyway, and validating the RSA
        # numbers is slow.
        load_pem_private_key(
            pem.strip().encode(), password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError):
        # Never quote the setting: it is a private key, even when malformed.
        raise ConfigError(
            setting,
            "is not a PEM private key",
            fix="paste the .pem file GitHub generated for the App, unchanged",
            docs=DOCS,
        ) from None
    return pem.strip() + "\n"


def worker_settings(environ: Mapping[str, str]) -> WorkerSettings:
    default = WorkerSettings()
    mode = environ.get("RUNKEYS_WORKER", "embedded").strip().lower()
    if mode not in ("embedded", "external"):
        raise ConfigError(
            "RUNKEYS_WORKER",
            f"is {mode!r}",
            fix="use `embedded` (a thread in the service) or `external` (`runkeys worker`)",
        )
    return WorkerSettings(
        embedded=mode == "embedded",
        poll_interval=_seconds(environ, "RUNKEYS_WORKER_POLL_INTERVAL", default.poll_interval),
        batch_size=_int(environ, "RUNKEYS_WORKER_BATCH_SIZE", default.batch_size, 1),
        claim_timeout=_duration(environ, "RUNKEYS_WORKER_CLAIM_TIMEOUT", default.claim_timeout),
        max_attempts=_int(environ, "RUNKEYS_WORKER_MAX_ATTEMPTS", default.max_attempts, 1),
        backoff_base=_duration(environ, "RUNKEYS_WORKER_BACKOFF_BASE", default.backoff_base),
        backoff_max=_duration(environ, "RUNKEYS_WORKER_BACKOFF_MAX", default.backoff_max),
        failed_retry=_duration(environ, "RUNKEYS_WORKER_FAILED_RETRY", default.failed_retry),
        sweep_interval=_duration(environ, "RUNKEYS_SWEEP_INTERVAL", default.sweep_interval),
        reconcile_interval=_duration(
            environ, "RUNKEYS_RECONCILE_INTERVAL", default.reconcile_interval
        ),
        backlog_warn_after=_duration(
            environ, "RUNKEYS_BACKLOG_WARN_AFTER", default.backlog_warn_after
        ),
        github_writes_per_minute=_int(
            environ, "RUNKEYS_GITHUB_WRITES_PER_MINUTE", default.github_writes_per_minute, 1
        ),
        github_time_factor=_factor(
            environ, "RUNKEYS_GITHUB_TIME_FACTOR", default.github_time_factor
        ),
    )


def log_scan_settings(environ: Mapping[str, str]) -> LogScanSettings:
    default = LogScanSettings()
    return LogScanSettings(
        enabled=_bool(environ, "RUNKEYS_LOG_SCAN", default.enabled),
        max_bytes=_int(environ, "RUNKEYS_LOG_SCAN_MAX_BYTES", default.max_bytes, 1024),
        delete_leaked=_bool(environ, "RUNKEYS_DELETE_LEAKED_LOGS", default.delete_leaked),
        give_up_after=_int(environ, "RUNKEYS_LOG_SCAN_ATTEMPTS", default.give_up_after, 1),
    )


def metrics_bind(environ: Mapping[str, str]) -> tuple[str, int] | None:
    """RUNKEYS_METRICS_BIND, `HOST:PORT` (`[::1]:9090` for IPv6): where `runkeys serve`
    answers `/metrics`, so that it need not be on the public address."""
    raw = environ.get("RUNKEYS_METRICS_BIND", "").strip()
    if not raw:
        return None
    host, _, port = raw.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        valid_host = _is_ip(host, version=6)
    else:
        # a name's last label is never all digits: 256.1.1.1 is a bad address, not a name
        named = bool(_HOSTNAME.fullmatch(host)) and not host.rsplit(".", 1)[-1].isdigit()
        valid_host = _is_ip(host, version=4) or named
    if not (valid_host and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(
            "RUNKEYS_METRICS_BIND",
            f"{raw!r} is not HOST:PORT",
            fix="e.g. 127.0.0.1:9090, or 0.0.0.0:9090 in a container ([::1]:9090 for IPv6)",
            docs=DOCS,
        )
    return host, int(port)


_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")


def _is_ip(text: str, *, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def log_level(environ: Mapping[str, str]) -> str:
    level = environ.get("RUNKEYS_LOG_LEVEL", "INFO").strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("RUNKEYS_LOG_LEVEL", f"is {level!r}", fix="use DEBUG, INFO or WARNING")
    return level


# --- readers --------------------------------------------------------------------------------


def _required(environ: Mapping[str, str], name: str, *, strip: bool = True) -> str:
    value = environ.get(name, "")
    if not value.strip():
        raise ConfigError(name, "is not set", fix=f"set {name}", docs=DOCS)
    return value.strip() if strip else value


def _url(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, "").strip() or default
    parts = urllib.parse.urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value.rstrip("/")
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return value.rstrip("/")  # a local stand-in (tests, the sandbox)
    raise ConfigError(
        name,
        f"{value!r} is not an https:// URL",
        fix="use https://… (plain http is allowed only for localhost)",
        docs=DOCS,
    )


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _duration(environ: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = timedelta(seconds=float(raw))  # plain seconds, fractions allowed: 0.5
    except (ValueError, OverflowError):
        try:
            value = parse_duration(raw)
        except ValueError as exc:
            raise ConfigError(name, str(exc), docs=DOCS) from None
    if value <= timedelta(0):
        raise ConfigError(name, f"{raw!r} must be longer than zero", docs=DOCS)
    return value


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    return _duration(environ, name, timedelta(seconds=default)).total_seconds()


def _factor(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(name, f"{raw!r} is not a number above zero", docs=DOCS)
    return value


def _int(environ: Mapping[str, str], name: str, default: int, low: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < low:
        raise ConfigError(name, f"{raw!r} is not a whole number of at least {low}", docs=DOCS)
    return int(raw)


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false"):
        raise ConfigError(name, f"{raw!r} is not true or false", docs=DOCS)
    return raw == "true"
