"""Named provider connections: `RUNKEYS_CONNECTION_<NAME>` holds a DSN or URL.

The action and the service read the same names, so a lease records only a connection's name; the
URL's password is never printed. Its `runkeys_…` query parameters are runkeys' own settings, taken
out before a driver sees the URL (docs/providers.md, "Allow lists")."""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from runkeys.connection_strings import PERCENT_DOCS, PERCENT_FIX, secret_forms, url_problem
from runkeys.errors import ConfigError

PREFIX = "RUNKEYS_CONNECTION_"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
SETTING_PREFIX = "runkeys_"
GRANTS = "runkeys_grants"
# A key=value DSN has no query to carry runkeys' settings; one that names one is refused.
_DSN_SETTING = re.compile(r"(?:^|\s)runkeys_\w*\s*=", re.IGNORECASE)


def normalize_name(name: str) -> str:
    """Connection names are case-insensitive: `ci_db` in a spec is `RUNKEYS_CONNECTION_CI_DB`."""
    return name.strip().upper().replace("-", "_")


@dataclass(frozen=True)
class Connection:
    """A named connection. `url` is what the driver gets: runkeys' own settings are taken out
    of it when the connection is made, whichever way it is made, so none can reach a driver."""

    name: str
    url: str = field(repr=False)
    # The allow list (`runkeys_grants`): None when the URL sets none, empty when it allows nothing.
    grants: frozenset[str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        url, grants = _own_settings(self.name, self.url)
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "grants", grants)

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
        """What in this connection must be scrubbed from any message: every form of its
        credentials (`runkeys.connection_strings.secret_forms`), the action's masks."""
        return secret_forms(self.url)


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
            # Imported here: psycopg loads libpq, half a second of a step that names no database.
            from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

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


def _own_settings(name: str, url: str) -> tuple[str, frozenset[str] | None]:
    """`url` without its `runkeys_…` query parameters, and the allow list they set. An unknown
    or repeated one is refused rather than ignored: a misspelt allow list must not allow all.
    Errors name the parameter, never quote the URL (it holds a password)."""
    if "://" not in url:
        if _DSN_SETTING.search(url):
            raise ConfigError(
                env_var(name),
                "runkeys settings (runkeys_…) need the URL form of the connection",
                fix="write it as postgresql://user:password@host:5432/db?runkeys_grants=…",
            )
        return url, None
    base, question, rest = url.partition("?")
    query, hash_mark, fragment = rest.partition("#")
    if not question:
        return url, None
    kept: list[str] = []
    grants: frozenset[str] | None = None
    for piece in query.split("&"):
        key, _, value = piece.partition("=")
        key = urllib.parse.unquote_plus(key)
        if not key.lower().startswith(SETTING_PREFIX):
            kept.append(piece)
            continue
        if key != GRANTS:
            raise ConfigError(
                env_var(name),
                f"unknown runkeys setting {key!r} in its URL",
                fix=f"the only one is {GRANTS} (a comma-separated allow list)",
            )
        if grants is not None:
            raise ConfigError(
                env_var(name), f"{GRANTS} is given twice", fix="list every name in one"
            )
        names = urllib.parse.unquote_plus(value).split(",")
        grants = frozenset(n.strip() for n in names if n.strip())
    if grants is None:
        return url, None
    new_query = "&".join(kept)
    return base + ("?" + new_query if new_query else "") + hash_mark + fragment, grants


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
        # runkeys' own settings are read first: no driver sees them (`@read` is a grant).
        if problem := url_problem(_own_settings(name, value.strip())[0]):
            raise ConfigError(
                key,
                f"could not be parsed as a URL: {problem}",
                fix=PERCENT_FIX,
                docs=PERCENT_DOCS,
            )
        found[name] = Connection(name=name, url=value.strip())
    return found


def connection_secrets(environ: Mapping[str, str]) -> list[str]:
    """The credentials of every `RUNKEYS_CONNECTION_*` in `environ`, in every form a client or
    an error could show them, whether or not the variable is valid: what the action masks
    before it reads anything else. Never raises."""
    forms: list[str] = []
    for key, value in environ.items():
        if key.upper().startswith(PREFIX):
            forms.extend(secret_forms(value.strip()))
    return forms
