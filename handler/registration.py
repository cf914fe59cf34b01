"""The bodies of `POST /v1/leases` and `POST /v1/leases/retire`, checked in full before the
ledger is touched. Pure: the verified identity, the settings and the clock are passed in.

A lease the service could not retire, or whose reference is not what its provider mints under
the label made here (`runkeys.labels`, never read from the body), is refused while the action can
still roll the key back: docs/service.md#security-model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TypeVar

import msgspec

from handler.errors import ApiError
from handler.ledger.leases import RetireReport
from runkeys.connections import Connection, env_var, normalize_name, target_of
from runkeys.durations import format_duration
from runkeys.errors import ConfigError, ParamError
from runkeys.leases import LeaseRequest, Lifetime, Registration, Retirement
from runkeys.names import SECRET_NAME, environment_name_problem, secret_name_problem
from runkeys.oidc import RunIdentity
from runkeys.providers import Registry
from runkeys.scrub import scrub_short, short

Body = TypeVar("Body", Registration, Retirement)
CLOCK_SKEW = timedelta(minutes=1)  # the runner's clock may run a little ahead of ours
MAX_PARAMS_BYTES = 16_384  # a provider's spec parameters, not a payload


def _decode(kind: type[Body], data: bytes) -> Body:
    """The body in the API's schema (`runkeys.leases`), or a 400 naming the field that is not."""
    try:
        body = msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        code = "invalid_lease" if "$.leases[" in str(exc) else "invalid_request"
        raise ApiError(400, code, f"The body is malformed: {short(str(exc), 300)}") from None
    except msgspec.DecodeError:
        raise ApiError(400, "invalid_request", "The body is not JSON") from None
    ids = [item.id for item in body.leases]
    if len(set(ids)) != len(ids):
        raise ApiError(400, "invalid_request", "A lease id appears twice in the request")
    return body


def parse_registration(
    data: bytes,
    *,
    identity: RunIdentity,
    registry: Registry,
    connections: Mapping[str, Connection],
    max_ttl: timedelta,
    now: datetime,
) -> list[LeaseRequest]:
    leases = _decode(Registration, data).leases
    for index, lease in enumerate(leases):
        _check_size_and_name(index, lease)
        _check(lease, identity=identity, registry=registry, connections=connections)
        _check_times(lease, max_ttl=max_ttl, now=now)
    return leases


def _check_size_and_name(index: int, lease: LeaseRequest) -> None:
    where = f"leases[{index}]"
    if len(json.dumps(dict(lease.params), default=str)) > MAX_PARAMS_BYTES:
        raise ApiError(
            400, "invalid_lease", f"{where}.params is larger than {MAX_PARAMS_BYTES} bytes"
        )
    # The key name is printed back (the CLI, logs) and names the secret: GitHub's rules.
    problem = secret_name_problem(lease.key_name)
    if problem:
        raise ApiError(400, "invalid_lease", f"{where}.key_name: {problem}")
    names = [part.name for part in lease.parts]
    if len(set(names)) != len(names):
        raise ApiError(400, "invalid_lease", f"{where}.parts names a part twice")


def _check(
    lease: LeaseRequest,
    *,
    identity: RunIdentity,
    registry: Registry,
    connections: Mapping[str, Connection],
) -> None:
    name = f"lease {lease.id} ({lease.key_name})"
    try:
        provider = registry.get(lease.provider)
    except ParamError as exc:
        raise ApiError(422, "unknown_provider", f"{name}: {exc}") from None
    try:
        provider.check_params(lease.params)
    except ParamError as exc:
        raise ApiError(422, "invalid_params", f"{name}: params.{exc.field}: {exc}") from None
    if not provider.reference_matches(lease.reference, label=lease.label, params=lease.params):
        raise ApiError(
            422,
            "reference_mismatch",
            f"{name}: reference {short(lease.reference, 100)!r} is not what {provider.name} "
            f"mints for this lease (label {lease.label}); a lease may only name the credential "
            "its own run minted (an action older than this service makes other labels)",
        )
    if lease.connection is not None:
        _check_connection(name, lease, lease.connection, connections)
        try:
            provider.check_allowed(lease.params, connections[normalize_name(lease.connection)])
        except ParamError as exc:
            raise ApiError(422, "invalid_params", f"{name}: params.{exc.field}: {exc}") from None
    if lease.connection is None and provider.needs_connection:
        raise ApiError(422, "invalid_lease", f"{name}: provider {provider.name} needs a connection")
    if lease.lifetime is Lifetime.PR and identity.pull_request is None:
        raise ApiError(
            422,
            "no_pull_request",
            f"{name}: lifetime `pr` needs a pull_request run; this run's ref is {identity.ref}",
        )
    if lease.secret is not None:
        _check_secret(name, lease, identity)


def _check_connection(
    name: str, lease: LeaseRequest, connection: str, connections: Mapping[str, Connection]
) -> None:
    """The service revokes through its own connection of that name: it must reach the server
    and database the key was minted on, or the key could never be revoked."""
    own = connections.get(normalize_name(connection))
    if own is None:
        raise ApiError(
            422,
            "unknown_connection",
            f"{name}: this service has no {env_var(connection)}, so it could not revoke "
            "the key; give the service the same connection the action uses",
        )
    try:
        target = target_of(own).fingerprint()
    except ConfigError as exc:
        raise ApiError(503, "service_misconfigured", f"{name}: the service's {exc.cause}") from None
    if lease.connection_target is None:
        raise ApiError(
            422,
            "connection_mismatch",
            f"{name}: the lease does not say which server {env_var(connection)} reached "
            "(connection_target); an action older than this service: run both at one version",
        )
    if lease.connection_target != target:
        raise ApiError(
            422,
            "connection_mismatch",
            f"{name}: the action's {env_var(connection)} reaches another server or database "
            "than this service's (scheme, host, port or database differ), so the service "
            "could never revoke the key; give both the same connection, written the same way",
        )


def _check_secret(name: str, lease: LeaseRequest, identity: RunIdentity) -> None:
    secret = lease.secret
    assert secret is not None
    if secret.repository.lower() != identity.repository.lower():
        raise ApiError(
            422,
            "foreign_repository",
            f"{name}: its secret is in {secret.repository}, not in the token's repository",
        )
    if not SECRET_NAME.fullmatch(secret.name):
        raise ApiError(422, "invalid_lease", f"{name}: {secret.name!r} is not a secret name")
    if secret.name != lease.key_name:
        # The service may delete the secret: only the one named after the key it leases.
        raise ApiError(
            422,
            "invalid_lease",
            f"{name}: its secret must be named {lease.key_name}, after its key, "
            f"not {short(secret.name, 100)!r}",
        )
    if secret.environment is not None:
        problem = environment_name_problem(secret.environment)
        if problem:
            raise ApiError(422, "invalid_lease", f"{name}: {problem}")


def _check_times(lease: LeaseRequest, *, max_ttl: timedelta, now: datetime) -> None:
    name = f"lease {lease.id} ({lease.key_name})"
    if lease.expires_at <= lease.issued_at:
        raise ApiError(422, "invalid_expiry", f"{name}: expires_at is not after issued_at")
    if lease.expires_at <= now:
        raise ApiError(
            422,
            "invalid_expiry",
            f"{name}: expires {lease.expires_at.isoformat()}, which has passed by this "
            "service's clock",
        )
    if lease.expires_at > now + max_ttl + CLOCK_SKEW:
        raise ApiError(
            422,
            "ttl_too_long",
            f"{name}: expires {lease.expires_at.isoformat()}, beyond this service's maximum "
            f"TTL of {format_duration(max_ttl)} from now",
        )


def parse_retire_reports(data: bytes) -> list[RetireReport]:
    reports = []
    for index, item in enumerate(_decode(Retirement, data).leases):
        if item.secret_pending and item.outcome != "revoked":
            # Revoked, its secret not deleted yet: the post step asks whether it still may
            # delete it. A key that could not be revoked is the worker's, secret and all.
            raise ApiError(
                400,
                "invalid_lease",
                f"leases[{index}].secret_pending goes with outcome revoked only: a key that "
                "could not be revoked is the worker's to retire, secret and all",
            )
        reports.append(
            RetireReport(
                lease_id=item.id,
                outcome=item.outcome,
                error=scrub_short(item.error or "", limit=300),
                secret_pending=item.secret_pending,
            )
        )
    return reports
