"""Retiring a key: revoke it at its provider, then delete the secret that carried it.

One path for the action's rollback and post step, the service's worker and `runkeys revoke`, so
each step is idempotent in one place. Whether to delete an environment is the caller's decision."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from runkeys.connections import Connection, env_var, normalize_name, target_of
from runkeys.errors import ConfigError, ProviderError
from runkeys.github.secrets import SecretStore
from runkeys.leases import SecretTarget
from runkeys.providers import Registry, RevokeRequest


class Lease(Protocol):
    """What retiring needs of a lease: the action's `LeaseRequest`, the ledger's `LeaseRecord`."""

    @property
    def provider(self) -> str: ...
    @property
    def reference(self) -> str: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def connection(self) -> str | None: ...
    @property
    def connection_target(self) -> str | None: ...
    @property
    def label(self) -> str | None: ...


@dataclass(frozen=True)
class RetireRequest:
    provider: str
    reference: str
    params: Mapping[str, Any] = field(default_factory=dict)
    connection: str | None = None
    connection_target: str | None = None  # the lease's; None for rows older than targets
    secret: SecretTarget | None = None
    value: str | None = field(default=None, repr=False)  # on the runner only
    label: str | None = None  # the lease's (`LeaseRequest.label`); None for rows older than it

    @classmethod
    def of(
        cls, lease: Lease, *, secret: SecretTarget | None, value: str | None = None
    ) -> RetireRequest:
        """Retire `lease`, deleting `secret` (None: its secret is not to be touched)."""
        return cls(
            provider=lease.provider,
            reference=lease.reference,
            params=lease.params,
            connection=lease.connection,
            connection_target=lease.connection_target,
            secret=secret,
            value=value,
            label=lease.label,
        )


@dataclass(frozen=True)
class Retired:
    secret_deleted: bool  # False when there was no secret, it was already gone, or it was kept
    kept_for: str | None = None  # what `keep_secret` said: why the secret was left in place


def retire(
    request: RetireRequest,
    *,
    registry: Registry,
    connections: Mapping[str, Connection],  # by normalized name, as `load_connections` has them
    secrets_for: Callable[[str], SecretStore] | None,
    keep_secret: Callable[[], str | None] | None = None,
    revoked: bool = False,
) -> Retired:
    """Revoke, then delete the secret. Raises `ProviderError`/`GitHubError` (retryable or not)
    or `ConfigError` (a connection this process cannot see); safe to call again after any.

    `keep_secret` is asked after the revoke, right before the delete (so as late as it can be):
    a reason to leave the secret, such as a newer lease having written it since, or None.
    `revoked`: the caller revoked it already (`revoke`), so only the secret is left to do."""
    if not revoked:
        revoke(request, registry=registry, connections=connections)
    if request.secret is None or secrets_for is None:
        return Retired(secret_deleted=False)
    kept_for = keep_secret() if keep_secret is not None else None
    if kept_for is not None:
        return Retired(secret_deleted=False, kept_for=kept_for)
    return Retired(secret_deleted=delete_secret(request, secrets_for))


def revoke(
    request: RetireRequest, *, registry: Registry, connections: Mapping[str, Connection]
) -> None:
    """The first half of `retire`, for a caller that asks about many secrets at once before it
    deletes any (the post step asks the service in one request): revoke at the provider.

    A lease whose label is known revokes only what its provider mints under that label: the
    service checked it at registration, and a ledger row changed since (by hand, or damaged)
    must not name another lease's credential either."""
    provider = registry.get(request.provider)
    if request.label is not None and not provider.reference_matches(
        request.reference, label=request.label, params=request.params
    ):
        raise ProviderError(
            provider.name,
            f"refusing to revoke {request.reference!r}: it is not what {provider.name} mints "
            f"for this lease's label {request.label}",
            retryable=False,
            fix="the lease names a credential it did not mint: a forged or damaged ledger row; "
            "check its history, and the credential, by hand",
        )
    connection = None
    if request.connection is not None:
        connection = connections.get(normalize_name(request.connection))
        if connection is None:
            raise ConfigError(
                env_var(request.connection),
                "is not set, so the key cannot be revoked from here",
                fix="give this process the same connection the action used",
            )
        _check_target(request, connection)
    provider.revoke(
        RevokeRequest(
            reference=request.reference,
            params=request.params,
            connection=connection,
            value=request.value,
            label=request.label,
        )
    )


def _check_target(request: RetireRequest, connection: Connection) -> None:
    """Revoke only on the server the key was minted on: elsewhere the key is not found, and
    "not found" would be taken for revoked while the key lives on."""
    if request.connection_target is None:
        return
    if target_of(connection).fingerprint() != request.connection_target:
        raise ProviderError(
            request.provider,
            f"{env_var(connection.name)} here reaches another server or database than the one "
            "this key was minted on (scheme, host, port or database differ); not revoking "
            "through it",
            retryable=False,
            fix=f"point {env_var(connection.name)} at the same server the action used, "
            "written the same way (the same host name, port and database)",
        )


def delete_secret(request: RetireRequest, secrets_for: Callable[[str], SecretStore]) -> bool:
    """The second half of `retire`: delete the request's secret (none: nothing to do). False
    when it was already gone."""
    if request.secret is None:
        return False
    return secrets_for(request.secret.repository).delete(request.secret)
