"""Named provider connections: `RUNKEYS_CONNECTION_<NAME>` holds a DSN or URL.

The action reads them from the step's `env:` (filled from secrets), the service from its own
environment, by the same names, so a lease only ever records a connection's name. The URL carries
the connection account's password: it is never printed (`repr` and `redacted` hide it).
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from psycopg.conninfo import conninfo_to_dict

from runkeys.errors import ConfigError

PREFIX = "RUNKEYS_CONNECTION_"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def normalize_name(name: str) -> str:
    """Connection names are case-insensitive: `ci_db` in a spec is `RUNKEYS_CONNECTION_CI_DB`."""
    return name.strip().upper().replace("-", "_")


@dataclass(frozen=True)
class Connection:
    name: str
    url: str = field(repr=False)

    @property
    def parsed(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(self.url)

    @property
    def password(self) -> str | None:
        password = self.parsed.password
        return None if password is None else urllib.parse.unquote(password)

    def redacted(self) -> str:
        """The URL with its password replaced: safe for errors and logs."""
        parts = self.parsed
        if parts.password is None:
            return self.url
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
        if parts.port:
            netloc += f":{parts.port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    def secrets(self) -> tuple[str, ...]:
        """What in this connection must be scrubbed from any message."""
        password = self.password
        return (password,) if password else ()


# URL schemes by the server they reach, and that server's default port.
_FAMILIES = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "redis": "redis",
    "rediss": "redis",
    "http": "http",
    "https": "https",
}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "redis": 6379, "http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """What a connection reaches, without how it logs in: the same target means the same
    server and database, so a role or user minted through one is found through the other."""

    scheme: str
    host: str
    port: int
    database: str

    def fingerprint(self) -> str:
        """SHA-256 hex of the target: what a lease records (no host names in the ledger)."""
        text = f"{self.scheme}://{self.host}:{self.port}/{self.database}"
        return hashlib.sha256(text.encode()).hexdigest()


def target_of(connection: Connection) -> Target:
    """The connection's target. Raises ConfigError, quoting nothing of the URL, when it
    cannot be read."""
    url = connection.url
    scheme = url.partition("://")[0].lower() if "://" in url else "postgresql"
    family = _FAMILIES.get(scheme.split("+", 1)[0])
    if family is None:
        raise ConfigError(env_var(connection.name), "has a URL scheme runkeys does not know")
    try:
        if family == "postgresql":  # libpq's rules: a key=value DSN, or a URL with ?host=
            info = conninfo_to_dict(url)
            host, port, database = info.get("host"), info.get("port"), info.get("dbname")
        else:
            parts = connection.parsed
            host, port, database = parts.hostname, parts.port, parts.path.strip("/")
        return Target(
            scheme=family,
            host=(str(host) if host else "").strip("[]").lower(),
            port=int(port) if port else _DEFAULT_PORTS[family],
            database=urllib.parse.unquote(str(database or ""))
            or ("0" if family == "redis" else ""),
        )
    except Exception:  # the parsers quote what they could not read: the password, maybe
        raise ConfigError(
            env_var(connection.name),
            "cannot be read as a URL or DSN",
            fix="percent-encode special characters in the user name and password",
        ) from None


def env_var(name: str) -> str:
    return PREFIX + normalize_name(name)


def load_connections(environ: Mapping[str, str]) -> dict[str, Connection]:
    """Every `RUNKEYS_CONNECTION_<NAME>` in `environ`, by normalized name."""
    found: dict[str, Connection] = {}
    for key, value in environ.items():
        if not key.upper().startswith(PREFIX):
            continue
        name = normalize_name(key[len(PREFIX) :])
        if not _NAME.fullmatch(name):
            raise ConfigError(key, "is not a valid connection name", fix="use letters, digits, _")
        if not value.strip():
            raise ConfigError(key, "is empty", fix="set it to the connection's URL or DSN")
        found[name] = Connection(name=name, url=value.strip())
    return found
