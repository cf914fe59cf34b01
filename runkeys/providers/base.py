"""The provider interface, modelled on Vault's database plugins (`dbplugin/v5`): a few methods,
each taking one frozen request and returning one frozen result, so fields can be added later.

The rules every provider keeps are in docs/architecture.md ("Add a provider"); the conformance
suite in `tests/providers/` checks them."""

from __future__ import annotations

import re
import secrets
import socket
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import requests

from runkeys.connection_strings import PERCENT_DOCS, PERCENT_FIX
from runkeys.connections import GRANTS, Connection, env_var
from runkeys.errors import GitHubError, ParamError, ProviderError, RunkeysError
from runkeys.labels import is_runkeys_name
from runkeys.scrub import described

if TYPE_CHECKING:
    from runkeys.github.session import GitHubSession


@dataclass(frozen=True)
class MintRequest:
    key_name: str  # the secret name the value is delivered under, e.g. DATABASE_URL
    params: Mapping[str, Any]  # the spec's provider parameters, already checked
    expires_at: datetime  # the key's TTL end; the provider's own expiry where it has one
    label: str  # `runkeys.labels.label`: unique per lease, `rk_…`, at most 32 characters
    connection: Connection | None = None


@dataclass(frozen=True)
class Minted:
    value: str = field(repr=False)
    reference: str  # finds the credential again for revoke: a role name, a key id; never a value
    expires_at: datetime
    # Extra parts exported into the job as `<KEY>_<PART>` (USER, PASSWORD, HOST, PORT, DATABASE);
    # only USER and PASSWORD are masked (`runkeys.issuance` says why).
    parts: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class RevokeRequest:
    reference: str
    params: Mapping[str, Any]
    connection: Connection | None = None
    # Only on the runner (rollback, post step), where the value still exists; the service never
    # has it. A provider that needs the value to revoke (an installation token) says so.
    value: str | None = field(default=None, repr=False)
    # The lease's label, for providers that check what they are about to delete (a deploy
    # key's title). None for ledger rows older than labels.
    label: str | None = None


@dataclass(frozen=True)
class ProviderDeps:
    """What providers may use besides their connection: GitHub (deploy keys, tokens), a clock,
    and the wait between retries (tests pass one that records instead of sleeping)."""

    github: GitHubSession | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    sleep: Callable[[float], None] = time.sleep


RETRYABLE_FIX = (
    "the server could not be reached or is busy: check that it is up and reachable from here; "
    "a revoke that fails this way is retried later"
)
REFUSED_FIX = "check the parameters, and the connection's account and its privileges"


class Provider(ABC):
    """One kind of credential. Subclasses live one per module in `runkeys.providers`."""

    name: ClassVar[str]
    # Whether a spec must name a connection (`connection: ci_db`) for this provider.
    needs_connection: ClassVar[bool] = False
    # The longest TTL the backend supports, if it caps it (installation tokens: one hour).
    max_ttl: ClassVar[timedelta | None] = None
    # GitHub App permissions the provider itself needs on the repository it works on, so the
    # action's installation token is narrowed to them and no more (deploy keys: Administration).
    github_permissions: ClassVar[Mapping[str, str]] = {}

    def __init__(self, deps: ProviderDeps | None = None) -> None:
        self.deps = deps or ProviderDeps()

    @abstractmethod
    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise `ParamError(field, message, fix=...)` for the first wrong parameter. No I/O."""

    def check_allowed(self, params: Mapping[str, Any], connection: Connection) -> None:
        """Raise `ParamError` for what `params` (already checked) would grant that `connection`
        does not allow. No I/O. Providers with an allow list override this; the others refuse
        one, so that a connection's `runkeys_grants` never silently allows everything."""
        if connection.grants is not None:
            raise ParamError(
                "connection",
                f"{env_var(connection.name)} sets {GRANTS}, which the {self.name} provider "
                "does not use",
                fix=f"remove {GRANTS} from that URL",
            )

    def refuse_disallowed(self, request: MintRequest, connection: Connection) -> None:
        """`check_allowed` at mint, as the provider error mint raises."""
        try:
            self.check_allowed(request.params, connection)
        except ParamError as exc:
            raise ProviderError(
                self.name,
                f"refusing to mint: {exc.field}: {exc.cause}",
                retryable=False,
                fix=exc.fix,
                docs=f"docs/providers.md#{self.name}",
            ) from None

    @abstractmethod
    def mint(self, request: MintRequest) -> Minted: ...

    @abstractmethod
    def revoke(self, request: RevokeRequest) -> None: ...

    def reference_matches(self, reference: str, *, label: str, params: Mapping[str, Any]) -> bool:
        """Whether `reference` is what `mint` returns for `label` (and these parameters). The
        service refuses a lease otherwise: a workflow must not name someone else's credential
        for the service to revoke. Strict by default: the reference is the label."""
        return reference == label

    def github_repository(self, reference: str) -> str | None:
        """The GitHub repository (owner/name) a revoke of `reference` acts on, if any: the
        service checks that it may act there for the token's repository."""
        return None

    def is_transient(self, exc: BaseException) -> bool:
        """Whether trying again later may succeed. Providers override this with their driver's
        own "cannot connect" and "timed out" errors, and fall back to the generic rule."""
        return is_transient(exc)

    @contextmanager
    def scrubbed(self, action: str, *values: str) -> Iterator[None]:
        """Turn any exception into a `ProviderError` whose text holds none of `values`.

        The driver's exception is not chained (`from None`): a traceback printed by a log
        handler would otherwise show its unscrubbed text under the scrubbed one."""
        try:
            yield
        except RunkeysError:
            raise
        except Exception as exc:
            message = described(exc, values)
            retryable = self.is_transient(exc)
            raise ProviderError(
                self.name,
                f"{action} failed: {message}",
                retryable=retryable,
                fix=RETRYABLE_FIX if retryable else REFUSED_FIX,
                docs=f"docs/providers.md#{self.name}",
            ) from None


def http_transient(exc: BaseException) -> bool:
    """What `requests` (under PyGithub and the http provider) raises when the other side is
    down, slow, or still failing after urllib3's own retries. Not a TLS failure: `requests`
    files it under ConnectionError, but a certificate does not mend by waiting."""
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    transient = (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError)
    return isinstance(exc, transient)


def is_transient(exc: BaseException) -> bool:
    """The generic rule: the network failed (refused, reset, timed out, name lookup to retry).

    Not every `OSError`: `requests`' HTTP errors, a missing certificate file or a permission
    error are `OSError`s too, and retrying them only delays the real message."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN


def connection_of(provider: str, request: MintRequest | RevokeRequest) -> Connection:
    """The request's connection; providers that need one are never called without it, but a
    caller that forgets gets this clear error rather than an AttributeError."""
    if request.connection is None:
        raise ProviderError(
            provider,
            "no connection given",
            retryable=False,
            fix="name one in the spec (`connection: <name>`) and set RUNKEYS_CONNECTION_<NAME>",
        )
    return request.connection


# Repeated on purpose: the same guard as connection_of, for another dependency and message.
def unparsed_url(
    provider: str, connection: Connection, example: str, *, what: str = "URL", hint: str = ""
) -> ProviderError:
    """The client could not read the connection string; its own message may quote the password,
    so only the variable is named, with the form it takes."""
    variable = env_var(connection.name)
    return ProviderError(
        provider,
        f"the {what} in {variable} could not be parsed",
        retryable=False,
        fix=f"set {variable} to {example} and {PERCENT_FIX}{hint}",
        docs=PERCENT_DOCS,
    )


def github_of(provider: str, deps: ProviderDeps) -> GitHubSession:
    """The GitHub session the action or service passed in; providers of GitHub credentials are
    never built without one, but a caller that forgets gets this clear error."""
    if deps.github is None:
        raise ProviderError(
            provider,
            "no GitHub access was given to this provider",
            retryable=False,
            fix="give the action `app-id` and `private-key` (or the service its App settings)",
        )
    return deps.github


def from_github(provider: str, exc: GitHubError) -> ProviderError:
    """GitHub's refusal as the provider's error: same cause, fix and docs, and retryable as
    GitHub's status says (5xx, rate limits, no answer). A 403 is GitHub's answer both to a rate
    limit and to a missing permission; only the first passes with time."""
    retryable = exc.retryable
    if exc.status == 403:
        retryable = "rate limit" in exc.cause.lower()
    return ProviderError(provider, exc.cause, retryable=retryable, fix=exc.fix, docs=exc.docs)


_LABEL = re.compile(r"^[a-z0-9_]{1,32}$")


def checked_name(provider: str, what: str, name: str) -> str:
    """A label (mint) or reference (revoke) used as a role or user name: `[a-z0-9_]`, at most 32
    characters. References come back from the ledger; a malformed one is refused, not quoted."""
    if not _LABEL.fullmatch(name):
        raise ProviderError(
            provider,
            f"{what} {name!r} is not a valid account name",
            retryable=False,
            fix="use 1 to 32 characters of a-z, 0-9 and _",
        )
    return name


def runkeys_account(provider: str, what: str, name: str) -> str:
    """A label (mint) or reference (revoke) that names an account runkeys makes: valid, and
    `rk_…`. Anything else is refused, not created or dropped, whichever ledger row or caller
    asks for it: `postgres` or `app_owner` is never a runkeys account."""
    checked_name(provider, what, name)
    if not is_runkeys_name(name):
        raise ProviderError(
            provider,
            f"refusing {what} {name!r}: it is not an account runkeys makes (rk_…)",
            retryable=False,
            fix="a lease that names an account runkeys did not make is a forged or damaged "
            "ledger row: check the lease's history, and the account, by hand",
        )
    return name


def utc(moment: datetime) -> datetime:
    """An aware UTC time; a naive one is taken as UTC (never as the server's local time)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class DatabaseAccount:
    """A minted database login and where it logs in: what a database key's value is made of."""

    user: str
    password: str = field(repr=False)
    host: str
    port: int | None
    database: str = ""

    def url(self, scheme: str, query: Mapping[str, str] | None = None) -> str:
        """A connection URL with the credential in it, every part percent-escaped the way libpq,
        PyMySQL, redis-py and SQLAlchemy decode it (a socket directory as the host, too)."""
        host = f"[{self.host}]" if ":" in self.host else urllib.parse.quote(self.host, safe="")
        user, password = (urllib.parse.quote(p, safe="") for p in (self.user, self.password))
        netloc = f"{user}:{password}@{host}" + (f":{self.port}" if self.port else "")
        path = "/" + urllib.parse.quote(self.database, safe="") if self.database else ""
        # %20, not "+": libpq decodes only percent-escapes in a URI.
        encoded_query = urllib.parse.urlencode(dict(query or {}), quote_via=urllib.parse.quote)
        return urllib.parse.urlunsplit((scheme, netloc, path, encoded_query, ""))

    def minted(
        self,
        scheme: str,
        *,
        reference: str,
        expires_at: datetime,
        query: Mapping[str, str] | None = None,
    ) -> Minted:
        """The key: the URL as the value, and the parts the action exports as `<KEY>_USER`,
        `<KEY>_PASSWORD`, `<KEY>_HOST`, `<KEY>_PORT` and `<KEY>_DATABASE`."""
        parts = {
            "USER": self.user,
            "PASSWORD": self.password,
            "HOST": self.host,
            "PORT": str(self.port or ""),
            "DATABASE": self.database,
        }
        return Minted(
            value=self.url(scheme, query),
            reference=reference,
            expires_at=expires_at,
            parts=parts,
        )


# --- parameter helpers shared by the providers' `check_params` ---------------------------------

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def check_known(params: Mapping[str, Any], known: set[str]) -> None:
    for key in params:
        if key not in known:
            allowed = ", ".join(sorted(known)) or "none"
            raise ParamError(key, f"unknown parameter {key!r}", fix=f"allowed here: {allowed}")


def get_int(
    params: Mapping[str, Any], key: str, default: int, *, low: int, high: int | None = None
) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamError(key, f"must be a whole number, not {value!r}")
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ParamError(key, f"must be {limit}, not {value}")
    return value


def get_str(params: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = params.get(key, default)
    if value is not None and not isinstance(value, str):
        raise ParamError(key, f"must be a string, not {value!r}")
    return value


def get_str_list(params: Mapping[str, Any], key: str) -> list[str]:
    value = params.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ParamError(key, "must be a list of strings")
    return list(value)


def check_allow_list(key: str, names: list[str], connection: Connection, what: str) -> None:
    """Every one of `names` is on the connection's allow list, if it has one (exact match)."""
    allowed = connection.grants
    if allowed is None:
        return
    for name in names:
        if name not in allowed:
            listed = ", ".join(sorted(allowed)) or "nothing"
            raise ParamError(
                key,
                f"{name!r} is not among the {what} {env_var(connection.name)} allows "
                f"({GRANTS}: {listed})",
                fix=f"use one of those, or ask whoever runs the connection to add {name!r}",
            )


def check_identifier(key: str, value: str) -> str:
    """A database identifier runkeys will quote anyway, refused if it would need quoting: names
    that look like SQL are a mistake at best."""
    if not _IDENT.fullmatch(value):
        raise ParamError(
            key,
            f"{value!r} is not a plain identifier",
            fix="use letters, digits and underscores, starting with a letter (at most 63)",
        )
    return value


def new_password(nbytes: int = 24) -> str:
    """URL-safe, so it survives being put in a connection URL unescaped by careless tools too."""
    return secrets.token_urlsafe(nbytes)
