"""Named provider connections: `RUNKEYS_CONNECTION_<NAME>` holds a DSN or URL.

The action reads them from the step's `env:` (filled from secrets), the service from its own
environment, by the same names, so a lease only ever records a connection's name. The URL carries
the connection account's password: it is never printed (`repr` and `redacted` hide it).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

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
