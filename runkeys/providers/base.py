"""The provider interface, modelled on Vault's database plugins (`dbplugin/v5`): a few methods,
each taking one frozen request and returning one frozen result, so fields can be added later.

Rules every provider keeps (the conformance suite in `tests/providers/` checks them):
- `check_params` runs before any side effect and raises `ParamError` naming the field;
- `mint` creates a credential with its own expiry where the backend has one; on failure it leaves
  nothing behind and raises `ProviderError` (retryable when the backend is down);
- `revoke` of something already gone is success; a backend that is down is a retryable error;
- no value is ever logged, and every error passes through `scrub` with the values it knows.
"""

from __future__ import annotations

import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from runkeys.connections import Connection
from runkeys.errors import ParamError, ProviderError, RunkeysError
from runkeys.scrub import scrub, short

if TYPE_CHECKING:
    from runkeys.github.session import GitHubSession


@dataclass(frozen=True)
class MintRequest:
    key_name: str  # the secret name the value is delivered under, e.g. DATABASE_URL
    params: Mapping[str, Any]  # the spec's provider parameters, already checked
    expires_at: datetime  # the key's TTL end; the provider's own expiry where it has one
    label: str  # unique per run and key, `[a-z0-9_]`, at most 32 characters: role and user names
    connection: Connection | None = None


@dataclass(frozen=True)
class Minted:
    value: str = field(repr=False)
    reference: str  # finds the credential again for revoke: a role name, a key id; never a value
    expires_at: datetime
    # Extra parts exported into the job as `<KEY>_<PART>` (USER, PASSWORD, HOST, PORT, DATABASE),
    # all masked like the value itself.
    parts: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class RevokeRequest:
    reference: str
    params: Mapping[str, Any]
    connection: Connection | None = None
    # Only on the runner (rollback, post step), where the value still exists; the service never
    # has it. A provider that needs the value to revoke (an installation token) says so.
    value: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ProviderDeps:
    """What providers may use besides their connection: GitHub (deploy keys, tokens) and a clock."""

    github: GitHubSession | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


class Provider(ABC):
    """One kind of credential. Subclasses live one per module in `runkeys.providers`."""

    name: ClassVar[str]
    # Whether a spec must name a connection (`connection: ci_db`) for this provider.
    needs_connection: ClassVar[bool] = False
    # The longest TTL the backend supports, if it caps it (installation tokens: one hour).
    max_ttl: ClassVar[timedelta | None] = None

    def __init__(self, deps: ProviderDeps | None = None) -> None:
        self.deps = deps or ProviderDeps()

    @abstractmethod
    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise `ParamError(field, message, fix=...)` for the first wrong parameter. No I/O."""

    @abstractmethod
    def mint(self, request: MintRequest) -> Minted: ...

    @abstractmethod
    def revoke(self, request: RevokeRequest) -> None: ...

    @contextmanager
    def scrubbed(self, action: str, *values: str) -> Iterator[None]:
        """Turn any exception into a `ProviderError` whose text holds none of `values`."""
        try:
            yield
        except RunkeysError:
            raise
        except Exception as exc:
            message = short(scrub(f"{type(exc).__name__}: {exc}", values))
            raise ProviderError(
                self.name, f"{action} failed: {message}", retryable=is_transient(exc)
            ) from None


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later may succeed: the backend is down or slow, not refusing."""
    return isinstance(exc, ConnectionError | TimeoutError | OSError)


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
