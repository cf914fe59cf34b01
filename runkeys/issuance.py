"""Issuing a step's keys: check the secret scope → mint each key (masked at once) → register the
leases → write the secrets → deliver into the job. A failure after the first mint rolls back
(revoke what was minted, delete what was written) before the error goes on.

No workflow-command I/O here: every collaborator, the action's `JobOutput` too, is passed in."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from runkeys import labels
from runkeys.connections import Connection, target_of
from runkeys.errors import LeaseServiceError, RunkeysError
from runkeys.github.secrets import MAX_SECRETS_PER_SCOPE, SecretStore
from runkeys.leases import (
    LeaseRequest,
    Lifetime,
    PartFingerprint,
    RetireOutcome,
    SecretTarget,
    fingerprint,
    new_lease_id,
)
from runkeys.masking import PUBLIC_PARTS, encodings, secret_parts
from runkeys.providers import MintRequest, Registry
from runkeys.retire import RetireRequest, delete_secret, revoke
from runkeys.scrub import described
from runkeys.spec import KeySpec


def part_fingerprints(parts: Mapping[str, str]) -> tuple[PartFingerprint, ...]:
    """What the lease keeps of the secret parts: their names and fingerprints. Not the user:
    it is the lease's label, which the ledger holds anyway (finding it tells of no leak)."""
    return tuple(
        PartFingerprint(name.upper(), fingerprint(value))
        for name, value in parts.items()
        if name.upper() not in PUBLIC_PARTS | {"USER"} and value
    )


class IssuanceError(RunkeysError):
    """The keys could not be issued; whatever had been minted was rolled back."""

    title = "Keys not issued"


class SecretExistsError(IssuanceError):
    """A key's secret exists and runkeys did not write it: writing would replace it, and
    retiring the key would delete it. Nothing was minted."""

    def __init__(self, key: str, scope: SecretScope) -> None:
        self.key = key
        super().__init__(
            f"{key}: {scope.describe()} already holds a secret {key.upper()} that runkeys did "
            "not write; it was left as it is and nothing was minted",
            fix=f"rename the key {key}, or write it to another destination",
        )


@dataclass(frozen=True)
class SecretScope:
    """Where the step's secrets go: an environment of the repository, or the repository."""

    repository: str  # owner/name
    environment: str | None = None

    def target(self, name: str) -> SecretTarget:
        return SecretTarget(self.repository, name, self.environment)

    def describe(self) -> str:
        return f"environment {self.environment}" if self.environment else "repository secrets"


@dataclass(frozen=True)
class IssuedKey:
    """One issued key as the job, the step summary and the post step may know it: no value."""

    lease: LeaseRequest
    variables: tuple[str, ...]  # the job variables and step outputs that carry it (and its parts)


@dataclass(frozen=True)
class Issued:
    keys: tuple[IssuedKey, ...]
    scope: SecretScope | None
    created_environment: str | None
    registered: bool


class JobOutput(Protocol):
    """The job, as the action shows it to issuance (workflow commands and files)."""

    def mask(self, form: str) -> None:
        """Hide `form` in the job's logs from now on (`::add-mask::`)."""

    def progress(self, message: str) -> None:
        """A line for the log; never holds a value."""

    def warning(self, message: str) -> None: ...

    def remember(self, leases: Sequence[LeaseRequest], created_environment: str | None) -> None:
        """Keep what the post step must retire (no values). Called again as things change."""

    def deliver(self, variables: Mapping[str, str], keys: Sequence[IssuedKey]) -> None:
        """Export `variables` into the job's environment and step outputs, all or nothing."""

    def withdraw(self) -> None:
        """Undo `deliver` as far as the files allow (rollback)."""


class LeaseRegistrar(Protocol):
    """The lease service (`runkeys.lease_client.LeaseClient`)."""

    def register(self, leases: Sequence[LeaseRequest]) -> object: ...

    def retire(self, outcomes: Sequence[RetireOutcome]) -> object: ...


@dataclass(frozen=True)
class Collaborators:
    registry: Registry
    connections: Mapping[str, Connection]
    job: JobOutput
    secrets: SecretStore | None = None  # needed when there is a scope
    leases: LeaseRegistrar | None = None  # None: no service; TTLs are the only bound
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    new_id: Callable[[], str] = new_lease_id
    # Whether runkeys wrote an existing secret (a live lease names it), so it may be replaced;
    # None: no ledger to ask (local mode), every existing secret may be replaced.
    ours: Callable[[SecretTarget], bool] | None = None


@dataclass
class _Held:
    """A minted key while the step runs: the only place its value lives."""

    lease: LeaseRequest
    value: str = field(repr=False)
    parts: Mapping[str, str] = field(repr=False)
    written: bool = False


@dataclass
class _Progress:
    held: list[_Held] = field(default_factory=list)
    registering: bool = False
    registered: bool = False  # the service's answer listed every lease
    created_environment: str | None = None
    delivering: bool = False


def issue(specs: Sequence[KeySpec], scope: SecretScope | None, deps: Collaborators) -> Issued:
    """Issue every key of `specs` (already parsed and checked), or none of them."""
    if scope is not None and deps.secrets is None:
        raise ValueError("a secret scope needs a SecretStore")
    create_environment = _check_scope(specs, scope, deps.secrets, deps.ours)
    progress = _Progress()
    try:
        return _issue(specs, scope, deps, create_environment, progress)
    except BaseException as exc:
        if not progress.held:
            raise
        values = [v for h in progress.held for v in (h.value, *secret_parts(h.parts))]
        _rollback(progress, deps, cause=described(exc, values))
        if isinstance(exc, RunkeysError | KeyboardInterrupt | SystemExit):
            raise
        # An unexpected error may quote what it was handling: only its scrubbed text goes on.
        raise IssuanceError(
            f"unexpected {described(exc, values)}",
            fix="the keys were rolled back; re-run the job, and report this if it persists",
        ) from None


def _issue(
    specs: Sequence[KeySpec],
    scope: SecretScope | None,
    deps: Collaborators,
    create_environment: bool,
    progress: _Progress,
) -> Issued:
    job = deps.job
    for spec in specs:
        progress.held.append(_mint(spec, scope, create_environment, deps))
        if spec.lifetime is Lifetime.JOB:  # the post step is the safety net from now on
            job.remember(_job_leases(progress.held), None)
    leases = [h.lease for h in progress.held]
    if deps.leases is not None:
        progress.registering = True  # from here the service may know the leases
        try:
            deps.leases.register(leases)
        except LeaseServiceError as exc:
            # A refusal (4xx) registered nothing; a 5xx or a lost answer may have.
            progress.registering = exc.status is None or exc.status >= 500
            raise
        progress.registered = True
        job.progress(f"Registered {len(leases)} lease(s) with the runkeys service.")
    if scope is not None:
        _write_secrets(scope, deps.secrets, create_environment, progress, job)
    variables, keys = _job_variables(progress.held)
    progress.delivering = True
    job.deliver(variables, keys)
    job.remember(_job_leases(progress.held), progress.created_environment)
    return Issued(
        keys=tuple(keys),
        scope=scope,
        created_environment=progress.created_environment,
        registered=deps.leases is not None,
    )


def _check_scope(
    specs: Sequence[KeySpec],
    scope: SecretScope | None,
    store: SecretStore | None,
    ours: Callable[[SecretTarget], bool] | None = None,
) -> bool:
    """Reads only, before anything is minted: whether the environment must be created, whether
    every existing secret the keys would replace is runkeys's own (`ours`), and whether the
    scope has room (GitHub's cap of 100 secrets per scope). True: create it."""
    if scope is None or store is None:
        return False
    if scope.environment is not None and not store.environment_exists(scope.environment):
        return True  # a new environment holds no secrets yet
    # One list call per scope, not a GET per key: the cap needs it anyway, so 0 calls added
    # (https://docs.github.com/rest/actions/secrets#list-repository-secrets).
    existing = store.names(scope.environment)
    if ours is not None:
        for spec in specs:
            if spec.name.upper() in existing and not ours(scope.target(spec.name)):
                raise SecretExistsError(spec.name, scope)
    new = {spec.name.upper() for spec in specs} - existing
    if len(existing) + len(new) > MAX_SECRETS_PER_SCOPE:
        raise IssuanceError(
            f"{scope.describe()} holds {len(existing)} secrets; {len(new)} more would pass "
            f"GitHub's limit of {MAX_SECRETS_PER_SCOPE} per scope. Nothing was minted.",
            fix="delete secrets that are no longer used, or write these keys to another "
            "environment (the `environment` input, e.g. `ci-run-{run_id}`)",
        )
    return False


def _mint(
    spec: KeySpec, scope: SecretScope | None, create_environment: bool, deps: Collaborators
) -> _Held:
    lease_id = deps.new_id()
    issued_at = deps.now()
    connection = deps.connections[spec.connection] if spec.connection else None
    # Before the mint: a minted key must never be left without its lease.
    target = None if connection is None else target_of(connection).fingerprint()
    request = MintRequest(
        key_name=spec.name,
        params=spec.params,
        expires_at=issued_at + spec.ttl,
        label=labels.label(lease_id, spec.name),
        connection=connection,
    )
    minted = deps.registry.get(spec.provider).mint(request)
    # Masked before anything else can print it: the value, every line, every encoding.
    for value in (minted.value, *secret_parts(minted.parts)):
        for form in encodings(value):
            deps.job.mask(form)
    lease = LeaseRequest(
        id=lease_id,
        key_name=spec.name,
        provider=spec.provider,
        reference=minted.reference,
        fingerprint=fingerprint(minted.value),
        lifetime=spec.lifetime,
        issued_at=issued_at,
        expires_at=minted.expires_at,
        connection=spec.connection,
        connection_target=target,
        secret=None if scope is None else scope.target(spec.name),
        environment_created=create_environment,
        params=spec.params,
        parts=part_fingerprints(minted.parts),
    )
    deps.job.progress(
        f"{spec.name}: minted by {spec.provider}, lifetime {spec.lifetime.value}, "
        f"expires {minted.expires_at.astimezone(UTC).isoformat(timespec='seconds')}"
    )
    return _Held(lease=lease, value=minted.value, parts=dict(minted.parts))


def _write_secrets(
    scope: SecretScope,
    store: SecretStore | None,
    create_environment: bool,
    progress: _Progress,
    job: JobOutput,
) -> None:
    assert store is not None
    if create_environment and scope.environment is not None:
        store.create_environment(scope.environment)
        progress.created_environment = scope.environment
        job.remember(_job_leases(progress.held), scope.environment)
    for held in progress.held:
        assert held.lease.secret is not None
        store.put(held.lease.secret, held.value)
        held.written = True
    created = " (created)" if progress.created_environment else ""
    job.progress(f"Wrote {len(progress.held)} secret(s) to {scope.describe()}{created}.")


def _job_variables(held: Sequence[_Held]) -> tuple[dict[str, str], list[IssuedKey]]:
    variables: dict[str, str] = {}
    keys: list[IssuedKey] = []
    for h in held:
        names = [h.lease.key_name, *(f"{h.lease.key_name}_{part}" for part in h.parts)]
        for name, value in zip(names, (h.value, *h.parts.values()), strict=True):
            if name.upper() in (n.upper() for n in variables):
                raise IssuanceError(
                    f"two keys would both set the job variable {name}",
                    fix=f"rename the key {h.lease.key_name} (its parts are exported as "
                    f"{h.lease.key_name}_<PART>)",
                )
            variables[name] = value
        keys.append(IssuedKey(lease=h.lease, variables=tuple(names)))
    return variables, keys


def _job_leases(held: Sequence[_Held]) -> list[LeaseRequest]:
    return [h.lease for h in held if h.lease.lifetime is Lifetime.JOB]


def _rollback(progress: _Progress, deps: Collaborators, *, cause: str) -> None:
    """Undo what was done, newest first. Every step only warns: the cause is what fails."""
    job = deps.job
    job.warning(f"Rolling back {len(progress.held)} minted key(s) because: {cause}")
    outcomes: list[RetireOutcome] = []
    unretired: list[LeaseRequest] = []
    store = deps.secrets
    secrets_for = (lambda _repository: store) if store is not None else None
    failures: dict[str, str] = {}
    for held in reversed(progress.held):
        try:
            revoke(
                RetireRequest.of(held.lease, secret=None, value=held.value),
                registry=deps.registry,
                connections=deps.connections,
            )
        except Exception as exc:
            failures[held.lease.id] = described(exc, [held.value, *secret_parts(held.parts)])
    # The environment this step created holds only this step's secrets, and deleting it
    # deletes them: one DELETE instead of one per secret (GitHub's write budget, issue 16).
    environment_left = _delete_created_environment(progress, store, job)
    alone = progress.created_environment is None or environment_left is not None
    for held in reversed(progress.held):
        lease = held.lease
        if lease.id not in failures and held.written and alone and secrets_for is not None:
            request = RetireRequest.of(lease, secret=lease.secret)
            try:
                delete_secret(request, secrets_for)
            except Exception as exc:
                failures[lease.id] = described(exc, [held.value, *secret_parts(held.parts)])
        if lease.id in failures:
            job.warning(f"Rollback could not retire {lease.key_name}: {failures[lease.id]}")
            outcomes.append(RetireOutcome(lease.id, "failed", failures[lease.id]))
            unretired.append(lease)
        else:
            outcomes.append(RetireOutcome(lease.id, "revoked"))
    if progress.delivering:
        _warn_on_failure(job, "remove the delivered variables", job.withdraw)
    if progress.registering and deps.leases is not None:
        registrar, sure = deps.leases, progress.registered
        _warn_on_failure(job, "tell the service", lambda: _tell(registrar, outcomes, sure=sure))
    # What could not be retired now is left for the post step to try again.
    _warn_on_failure(job, "save state", lambda: job.remember(unretired, environment_left))


def _tell(registrar: LeaseRegistrar, outcomes: Sequence[RetireOutcome], *, sure: bool) -> None:
    """Report the rollback. After a registration whose answer never came (`sure` False), the
    service may never have stored the leases: its "no such lease" is then no failure."""
    try:
        registrar.retire(outcomes)
    except LeaseServiceError as exc:
        if sure or exc.code != "lease_not_found":
            raise


def _delete_created_environment(
    progress: _Progress, store: SecretStore | None, job: JobOutput
) -> str | None:
    """Delete the environment this step created; its name if that failed."""
    environment = progress.created_environment
    if environment is None or store is None:
        return None
    try:
        store.delete_environment(environment)
    except Exception as exc:
        job.warning(f"Rollback could not delete environment {environment}: {described(exc)}")
        return environment
    return None


def _warn_on_failure(job: JobOutput, doing: str, step: Callable[[], object]) -> None:
    try:
        step()
    except Exception as exc:
        job.warning(f"Rollback could not {doing}: {described(exc)}")
