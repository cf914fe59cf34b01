"""What the conformance suite needs to know about one provider: how to get a (least-privileged)
admin connection, the parameters of a usable credential, how to use a minted credential for
real, how to tell that it no longer works, and what it would leave behind at the backend.

One subclass per provider lives beside this module; `conftest.py` builds each (skipping or
failing when its backend is missing) and always runs its `cleanup`, even when a test failed.
"""

from __future__ import annotations

import socket
import traceback
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from runkeys.connections import Connection
from runkeys.errors import RunkeysError
from runkeys.providers.base import Minted, MintRequest, Provider, RevokeRequest
from tests.services import unique

# The expiry tests ask for: whole seconds, so a backend that stores seconds compares equal.
EXPIRES_AT = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)


class Harness(ABC):
    """One provider under test, with a backend of its own for the length of one test."""

    provider: Provider
    connection: Connection | None  # the least-privileged admin account the provider mints with
    params: Mapping[str, Any]  # a spec's parameters that grant something `use` can try
    # What minting the same label twice does: "refused" (an account of that name exists),
    # "same" (an issuer honouring Idempotency-Key answers with the first credential),
    # "replaced" (the first is deleted: a leftover of a lost answer), "independent" (labels
    # mean nothing to the backend: two credentials).
    same_label = "refused"
    # What ties a reference to the label it was minted under, so a lease cannot name another
    # lease's credential: "name" (the reference is the label; the service checks it),
    # "revoke" (revoke checks the credential itself: a deploy key's title, an issuer that
    # compares Runkeys-Label), "nothing" (the service has nothing to revoke with).
    bound = "name"

    def __init__(self) -> None:
        self.labels: list[str] = []  # every label minted, for `cleanup`
        self.minted_labels: dict[str, str] = {}  # reference → its label, as a lease keeps it

    # -- what each provider says ----------------------------------------------------------------

    def setup(self) -> None:  # noqa: B027 (optional: the HTTP issuer only starts a server)
        """Create what the tests need at the backend (the admin account, a schema)."""

    @abstractmethod
    def use(self, minted: Minted) -> None:
        """Use the credential for real: something its grants allow works, something they do not
        is refused. Raises AssertionError (or the client's error) otherwise."""

    @abstractmethod
    def refused(self, minted: Minted) -> None:
        """Assert that the credential no longer works at all."""

    @abstractmethod
    def leftovers(self, reference: str) -> list[str]:
        """Everything of this credential still at the backend (accounts, sessions, tokens)."""

    @abstractmethod
    def cleanup(self) -> None:
        """Remove everything the test created, with the backend's own admin account; safe after
        a `setup` that failed half-way."""

    @contextmanager
    def backend_down(self) -> Iterator[None]:
        """Within: the backend cannot be reached (its port is one where nothing listens)."""
        saved = self.connection
        assert saved is not None
        self.connection = closed_port(saved)
        try:
            yield
        finally:
            self.connection = saved

    @contextmanager
    def wrong_account(self) -> Iterator[None]:
        """Within: the provider logs in with an account the backend does not know."""
        saved = self.connection
        assert saved is not None
        parts = saved.parsed
        netloc = f"nosuchaccount:not-the-password@{parts.netloc.rsplit('@', 1)[-1]}"
        self.connection = Connection(
            saved.name, urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        )
        try:
            yield
        finally:
            self.connection = saved

    def hold(self, minted: Minted) -> Callable[[], bool] | None:
        """Open a session with the credential; the function says whether it is still alive.
        None for credentials without sessions."""
        return None

    def injections(self) -> list[dict[str, Any]]:
        """Parameters that would inject SQL, ACL rules or requests elsewhere: each refused."""
        return []

    def backend_refusal(self) -> dict[str, Any] | None:
        """Parameters the spec check accepts but the backend refuses (a role that does not
        exist, say): mint must fail, not retryably, leaving nothing."""
        return None

    # -- shared --------------------------------------------------------------------------------

    def unknown_reference(self) -> str:
        """A well-formed reference to nothing the backend has ever held."""
        return self.label()

    def label(self) -> str:
        label = unique("rk")
        self.labels.append(label)
        return label

    def mint(self, params: Mapping[str, Any] | None = None, **overrides: Any) -> Minted:
        request = MintRequest(
            key_name="TEST_KEY",
            params=self.params if params is None else params,
            expires_at=EXPIRES_AT,
            label=overrides.pop("label", None) or self.label(),
            connection=overrides.pop("connection", self.connection),
        )
        assert not overrides, overrides
        self.provider.check_params(request.params)
        minted = self.provider.mint(request)
        self.minted_labels[minted.reference] = request.label
        return minted

    def revoke(self, minted_or_reference: Minted | str, **overrides: Any) -> None:
        """As the service revokes: with the lease's label (the one it was minted under)."""
        minted = minted_or_reference if isinstance(minted_or_reference, Minted) else None
        reference = minted.reference if minted else str(minted_or_reference)
        self.provider.revoke(
            RevokeRequest(
                reference=reference,
                params=overrides.pop("params", self.params),
                connection=overrides.pop("connection", self.connection),
                value=overrides.pop("value", self.revoke_value(minted)),
                label=overrides.pop("label", self.minted_labels.get(reference)),
            )
        )
        assert not overrides, overrides

    def revoke_value(self, minted: Minted | None) -> str | None:
        """The value revoke gets: none, as the service revokes; a provider that needs it (an
        installation token) is revoked here as the runner does, with it."""
        return None

    def secrets(self, *minted: Minted) -> list[str]:
        """Every value that must never show in an error: minted values and their parts, and the
        admin connection's password."""
        found = list(self.connection.secrets()) if self.connection else []
        for one in minted:
            found.append(one.value)
            found += [v for k, v in one.parts.items() if k == "PASSWORD"]
        return found


def closed_port_url(url: str) -> str:
    """`url` with its port replaced by one nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    parts = urllib.parse.urlsplit(url)
    userinfo, _, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}@" if userinfo else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{netloc}{parts.hostname}:{port}"))


def closed_port(connection: Connection) -> Connection:
    return Connection(connection.name, closed_port_url(connection.url))


def assert_clean(exc: BaseException, secrets: list[str]) -> None:
    """No secret in anything a person or a log could see of `exc`: its text, its explanation,
    its repr, and the traceback a log handler would print (with chained exceptions)."""
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    if isinstance(exc, RunkeysError):
        texts.append(exc.explain())
    for secret in secrets:
        if len(secret) < 4:
            continue
        for text in texts:
            assert secret not in text, f"a secret shows in: {text[:300]}"
            assert urllib.parse.quote(secret, safe="") not in text
