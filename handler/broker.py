"""Broker mode, the service's side of `POST /v1/keys` (docs/service.md#broker-mode): the spec
checked with the service's rules, the policy evaluated for every key, the keys minted with the
service's own connections and App by `runkeys.issuance.issue` (all or nothing), the leases
committed before any value leaves, and each value sealed to the runner's one-request key.

Who asks, and every placeholder's value, come from the verified token only. The service keeps
no value: a retried request id is told the lease ids it got (409), never the keys again."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import msgspec
from nacl.exceptions import CryptoError

from handler.errors import ApiError
from handler.ledger.broker import (
    claim_request,
    grant_request,
    granted_keys,
    record_decision,
    release_request,
    request_of,
)
from handler.ledger.leases import RetireReport, apply_reports, get
from handler.ledger.leases import register as register_leases
from handler.ledger.queue import LeasesById, queue
from handler.ledger.secrets import written_by_runkeys
from handler.logs import event, logger
from handler.policy import Claims, Decision, DecisionRecord, KeyDecision, evaluate, record
from handler.policy import Destination as PolicyDestination
from handler.service import Service
from runkeys.broker import KeysGranted, KeysRequest, KeysRetirement, SealedKey, Unsealed, seal
from runkeys.errors import RunkeysError, SpecError
from runkeys.github.secrets import SecretStore
from runkeys.issuance import (
    Collaborators,
    Issued,
    IssuedKey,
    SecretExistsError,
    SecretScope,
    issue,
)
from runkeys.leases import (
    LeaseRequest,
    Lifetime,
    Retired,
    RetiredLease,
    RetireOutcome,
    SecretTarget,
    new_lease_id,
)
from runkeys.names import (
    PlaceholderError,
    environment_name_problem,
    fill_placeholders,
    placeholders_of,
)
from runkeys.oidc import RunIdentity
from runkeys.scrub import scrub_short, short
from runkeys.spec import KeySpec, SpecRules, parse_keys

# Repeated on purpose: event() calls look alike, but each names its own fields to log.
log = logger("broker")
Body = TypeVar("Body", KeysRequest, KeysRetirement)
# The audit's own logger: one JSON line per decision, easy to route apart.
audit_log = logger("audit")
BROKER_OFF = (
    "Broker mode is off: this service has no RUNKEYS_POLICY_FILE, so it mints nothing "
    "(deny by default; docs/policy.md)"
)


def permissions_for(scope: SecretScope | None) -> dict[str, str]:
    """The App permissions writing the keys needs, and no more (the action's table, see
    https://docs.github.com/rest/authentication/permissions-required-for-github-apps)."""
    if scope is None:
        return {}
    needs = {"secrets": "write"}
    if scope.environment is not None:
        needs |= {"environments": "write", "actions": "read", "administration": "write"}
    return needs


# Repeated on purpose: field-by-field like policy's DecisionRecord, but from another type.
def claims_of(identity: RunIdentity) -> Claims:
    """The policy's view of the verified token."""
    return Claims(
        repository=identity.repository,
        repository_id=str(identity.repository_id),
        repository_owner=identity.owner,
        ref=identity.ref,
        event_name=identity.event_name,
        run_id=str(identity.run_id),
        run_attempt=str(identity.run_attempt),
        ref_type=identity.ref_type,
        environment=identity.environment,
        workflow_ref=identity.workflow_ref,
        job_workflow_ref=identity.job_workflow_ref,
        runner_environment=identity.runner_environment,
        actor=identity.actor,
        sha=identity.sha,
    )


def fill_environment(template: str, identity: RunIdentity) -> str:
    """The destination's environment name, its placeholders filled from the token only."""
    pr = identity.pull_request
    values = {
        "pr": "" if pr is None else str(pr),
        "run_id": str(identity.run_id),
        "run_attempt": str(identity.run_attempt),
        "run_number": "" if identity.run_number is None else str(identity.run_number),
    }
    try:
        fields = placeholders_of(template)
    except PlaceholderError as exc:
        raise _invalid_destination(f"{exc.message}; {exc.fix}") from None
    for name in fields:
        if not values[name]:
            why = (
                f"a pull request's run; this run's ref is {identity.ref}"
                if name == "pr"
                else "a token with a run_number claim"
            )
            raise _invalid_destination(f"{{{name}}} needs {why}")
    filled = fill_placeholders(template, values)
    if problem := environment_name_problem(filled):
        raise _invalid_destination(f"{short(filled, 100)!r}: {problem}")
    return filled


def _invalid_destination(message: str) -> ApiError:
    return ApiError(422, "invalid_destination", f"destination.environment: {message}")


def _decode_body(data: bytes, schema: type[Body]) -> Body:
    """The body in the API's schema (`runkeys.broker`), or a 400 naming the field that is not."""
    try:
        return msgspec.json.decode(data, type=schema)
    except msgspec.ValidationError as exc:
        raise ApiError(
            400, "invalid_request", f"The body is malformed: {short(str(exc), 300)}"
        ) from None
    except msgspec.DecodeError:
        raise ApiError(400, "invalid_request", "The body is not JSON") from None


def decode(data: bytes) -> KeysRequest:
    body = _decode_body(data, KeysRequest)
    kind, environment = body.destination.kind, body.destination.environment
    if (kind == "environment") != (environment is not None):
        raise ApiError(
            400,
            "invalid_request",
            "destination.environment goes with kind `environment`, and only with it",
        )
    try:
        seal(body.public_key, Unsealed(""))  # before anything is minted for it
    except (CryptoError, ValueError, TypeError):
        raise ApiError(400, "invalid_request", "public_key is not an X25519 public key") from None
    return body


def parse_spec(text: str, service: Service, identity: RunIdentity) -> tuple[KeySpec, ...]:
    rules = SpecRules(
        max_ttl=service.config.max_ttl,
        connections=service.config.connections,
        pull_request=identity.pull_request is not None,
    )
    try:
        return parse_keys(text, rules)
    except SpecError as exc:
        about = {p.key for p in exc.problems}
        key = about.pop() if len(about) == 1 else None  # named when every problem is one key's
        raise ApiError(
            422,
            "invalid_spec",
            f"keys: {short(exc.cause, 2000)}",
            extra={} if key is None else {"key": key},
        ) from None
    except RunkeysError as exc:
        raise ApiError(422, "invalid_spec", f"keys: {short(exc.cause, 2000)}") from None


# --- issuance's collaborators, on the service ---------------------------------------------


@dataclass
class ServiceJob:
    """`runkeys.issuance.JobOutput` in the service: nothing printed holds a value, nothing is
    masked (no job log here), and the delivery is kept in memory to be sealed."""

    identity: RunIdentity
    minted: int = 0  # keys whose mint began: the failing one is the last
    stage: str = "minting"
    writing: str | None = None
    delivered: dict[str, str] = field(default_factory=dict, repr=False)
    keys: list[IssuedKey] = field(default_factory=list)

    def new_id(self) -> str:
        self.minted += 1  # issuance asks for an id right before each mint
        return new_lease_id()

    def mask(self, form: str) -> None:
        return None

    def progress(self, message: str) -> None:
        event(log, message, repository=self.identity.repository, run_id=self.identity.run_id)

    def warning(self, message: str) -> None:
        event(
            log,
            message,
            level=logging.WARNING,
            repository=self.identity.repository,
            run_id=self.identity.run_id,
        )

    def remember(self, leases: Sequence[LeaseRequest], created_environment: str | None) -> None:
        return None  # the ledger is the memory: every lease is registered before delivery

    def deliver(self, variables: Mapping[str, str], keys: Sequence[IssuedKey]) -> None:
        self.stage = "sealing"
        self.delivered = dict(variables)
        self.keys = list(keys)

    def withdraw(self) -> None:
        self.delivered = {}
        self.keys = []


class WatchedSecrets(SecretStore):
    """The service's App writing the request's secrets; remembers which one it was writing."""

    watcher: ServiceJob

    def put(self, target: SecretTarget, value: str) -> bool:
        self.watcher.stage, self.watcher.writing = "writing", target.name
        return super().put(target, value)


@dataclass
class LedgerRegistrar:
    """`runkeys.issuance.LeaseRegistrar` on the ledger: the leases and the request's grant in
    one durable commit, before any value leaves the service; a rollback's outcomes after."""

    service: Service
    identity: RunIdentity
    installation_id: int
    request_id: str
    claimed_at: datetime  # the request's claim, by its time (`claim_request`)
    job: ServiceJob

    def register(self, leases: Sequence[LeaseRequest]) -> object:
        self.job.stage = "registering"
        now = self.service.clock()
        lease_ids = [x.id for x in leases]
        with self.service.ledger.begin(durable=True) as conn:
            registered = register_leases(
                conn, self.identity, leases, installation_id=self.installation_id, now=now
            )
            granted = grant_request(
                conn, self.identity, self.request_id, lease_ids, claimed_at=self.claimed_at, now=now
            )
            if not granted:
                # Pruned while served (REQUEST_RETENTION): a retry may hold the id now, so
                # this one registers nothing and is rolled back whole.
                raise RunkeysError(
                    f"request {self.request_id} was forgotten by the ledger while it was "
                    "being served (older than its retention)",
                    fix="send a new request id",
                )
        self.service.metrics.leases_registered.inc(registered.created)
        return registered

    def retire(self, outcomes: Sequence[RetireOutcome]) -> object:
        reports = [
            RetireReport(lease_id=o.id, outcome=o.outcome, error=scrub_short(o.error or ""))
            for o in outcomes
        ]
        with self.service.ledger.begin() as conn:
            reported = apply_reports(conn, self.identity, reports, now=self.service.clock())
        if any(o.outcome == "failed" for o in outcomes):
            self.service.wake_worker()
        return reported


# --- the request --------------------------------------------------------------------------


def grant(
    service: Service, identity: RunIdentity, installation_id: int, data: bytes
) -> KeysGranted:
    """Every key of the request sealed, or an ApiError and nothing left behind."""
    store = service.policy
    if store is None:
        raise ApiError(404, "broker_off", BROKER_OFF)
    body = decode(data)
    specs = parse_spec(body.keys, service, identity)
    environment = None
    if body.destination.kind == "environment":
        assert body.destination.environment is not None
        environment = fill_environment(body.destination.environment, identity)
    destination = PolicyDestination(body.destination.kind, environment)
    claimed_at = service.clock()
    with service.ledger.begin() as conn:
        earlier = claim_request(conn, identity, body.request_id, now=claimed_at)
    if earlier is not None:
        raise _repeated(identity, body.request_id, earlier.state, earlier.lease_ids)
    try:
        decision = _decide(service, identity, specs, destination, body.request_id)
        if not decision.allowed:
            raise _denied(decision)
        issued, job = _issue(
            service, identity, installation_id, body, specs, environment, claimed_at
        )
    except BaseException:
        # Refused, or rolled back whole: nothing of this request is left, its id is free.
        with service.ledger.begin() as conn:
            release_request(conn, identity, body.request_id, claimed_at=claimed_at)
        raise
    # Granted and committed: from here the id stays taken, whatever happens to the answer.
    kind = body.destination.kind
    sealed = [_sealed(body.public_key, key, job.delivered, kind, environment) for key in job.keys]
    event(
        log,
        "keys granted",
        **_request_fields(identity, body.request_id),
        leases=[k.lease_id for k in sealed],
        created_environment=issued.created_environment,
    )
    return KeysGranted(
        request_id=body.request_id, keys=sealed, created_environment=issued.created_environment
    )


def _request_fields(identity: RunIdentity, request_id: str) -> dict[str, Any]:
    """What a log line about one run attempt's request names it by."""
    return {
        "repository": identity.repository,
        "run_id": identity.run_id,
        "run_attempt": identity.run_attempt,
        "request_id": request_id,
    }


def _repeated(
    identity: RunIdentity, request_id: str, state: str, lease_ids: Sequence[str]
) -> ApiError:
    event(
        log,
        "keys request repeated",
        level=logging.WARNING,
        **_request_fields(identity, request_id),
        state=state,
        leases=list(lease_ids),
    )
    if state == "minting":
        message = (
            f"Request {request_id} is being served now; the service mints once per request id. "
            "Wait for its answer, or send a new request id"
        )
    else:
        message = (
            f"Request {request_id} was granted before (leases {', '.join(lease_ids)}); the "
            "service keeps no value to send again. Send a new request id for new keys; the "
            "leases of the first are retired with their lifetime"
        )
    return ApiError(
        409, "request_repeated", message, extra={"state": state, "lease_ids": list(lease_ids)}
    )


def _keys_before(service: Service, identity: RunIdentity) -> int:
    """Keys this run attempt was granted by earlier requests: they count toward `max_keys`.
    A refused or rolled-back request left none (its row is gone)."""
    with service.ledger.begin() as conn:
        return granted_keys(conn, identity)


def _decide(
    service: Service,
    identity: RunIdentity,
    specs: Sequence[KeySpec],
    destination: PolicyDestination,
    request_id: str,
) -> Decision:
    store = service.policy
    assert store is not None
    claims = claims_of(identity)
    decision = evaluate(
        store.policy,
        claims,
        specs,
        destination,
        keys_before=_keys_before(service, identity),
    )
    now = service.clock()
    made = record(decision, claims, destination, at=now)
    with service.ledger.begin() as conn:
        record_decision(
            conn, made, repository_id=identity.repository_id, request_id=request_id, now=now
        )
    _audit(service, made)
    return decision


def _audit(service: Service, made: DecisionRecord) -> None:
    """One log line per decision (the record's fields beside the usual ones: JSON on stderr),
    and the counter by outcome and rule."""
    fields = msgspec.to_builtins(made)
    event(audit_log, fields.pop("event"), **fields)
    for rule in made.rules or ["none"]:
        service.metrics.policy_decisions.labels(outcome=made.outcome, rule=rule).inc()


def _denied(decision: Decision) -> ApiError:
    denied = [k for k in decision.keys if not k.allowed]
    first = denied[0]
    return ApiError(
        403,
        "policy_denied",
        f"{_refusal(first)}. Nothing was minted"
        + (f" ({len(denied) - 1} more key(s) denied too)" if len(denied) > 1 else ""),
        # `key`: the first denied key's name, which the action's annotation names
        # (`runkeys.broker.KeysRefused`).
        extra={"key": first.key, "denied": [_refusal(k) for k in denied]},
    )


def _refusal(key: KeyDecision) -> str:
    return f"{key.key}: denied by {key.rule}: {key.field}: {key.reason}; fix: {key.fix}"


def _issue(  # noqa: PLR0917 (one request's parts, each used once)
    service: Service,
    identity: RunIdentity,
    installation_id: int,
    body: KeysRequest,
    specs: Sequence[KeySpec],
    environment: str | None,
    claimed_at: datetime,
) -> tuple[Issued, ServiceJob]:
    kind = body.destination.kind
    scope = None if kind == "job" else SecretScope(identity.repository, environment)
    job = ServiceJob(identity)
    secrets = None
    if scope is not None:
        github = service.broker_github(permissions_for(scope))
        # The caller's check found the installation already: a narrowed session asking again
        # would cost every fresh service's first request one more GitHub call than local mode.
        github.remember_installation(identity.repository, installation_id)
        secrets = WatchedSecrets(github, identity.repository)
        secrets.watcher = job
    deps = Collaborators(
        registry=service.registry,
        connections=service.config.connections,
        job=job,
        secrets=secrets,
        leases=LedgerRegistrar(
            service, identity, installation_id, body.request_id, claimed_at, job
        ),
        now=service.clock,
        new_id=job.new_id,
        ours=lambda target: _written_by_runkeys(service, identity, target),
    )
    try:
        # Anything but a RunkeysError comes out as issuance's IssuanceError, rolled back.
        return issue(specs, scope, deps), job
    except SecretExistsError as exc:
        raise ApiError(409, "secret_exists", exc.cause, extra={"key": exc.key}) from None
    except RunkeysError as exc:
        raise _not_issued(job, specs, exc.cause) from None


def _written_by_runkeys(service: Service, identity: RunIdentity, target: SecretTarget) -> bool:
    """A live lease of the token's repository names the secret: a rotation may replace it."""
    with service.ledger.begin() as conn:
        return written_by_runkeys(conn, identity.repository_id, target.environment, target.name)


def _not_issued(job: ServiceJob, specs: Sequence[KeySpec], cause: str) -> ApiError:
    """One error naming the key that failed and why (issuance scrubbed the values out)."""
    key = None
    if job.stage == "minting" and job.minted:
        key = specs[job.minted - 1].name
        where = f"{key}: minting failed"
    elif job.stage == "writing" and job.writing:
        key = _key_of(job.writing, specs)
        where = f"{job.writing}: writing its secret failed"
    else:
        where = f"{job.stage} failed"
    return ApiError(
        502,
        "keys_not_issued",
        f"{where}: {scrub_short(cause, limit=500)}. Every key of the request was rolled back",
        extra={} if key is None else {"key": key},
    )


def _key_of(secret: str, specs: Sequence[KeySpec]) -> str | None:
    """The key a secret belongs to: its own name, or `<KEY>_<PART>` (GitHub upper-cases)."""
    by_length = sorted(specs, key=lambda spec: len(spec.name), reverse=True)
    for spec in by_length:
        name = spec.name.upper()
        if secret.upper() == name or secret.upper().startswith(name + "_"):
            return spec.name
    return None


def _sealed(
    public_key: str,
    key: IssuedKey,
    delivered: Mapping[str, str],
    kind: str,
    environment: str | None,
) -> SealedKey:
    lease = key.lease
    name, *parts = key.variables
    prefix = f"{lease.key_name}_"
    unsealed = Unsealed(
        delivered[name], {part.removeprefix(prefix): delivered[part] for part in parts}
    )
    return SealedKey(
        name=lease.key_name,
        provider=lease.provider,
        lease_id=lease.id,
        lifetime=lease.lifetime,
        expires_at=lease.expires_at,
        scope=kind,  # type: ignore[arg-type]
        environment=environment,
        sealed=seal(public_key, unsealed),
    )


# --- `POST /v1/keys/retire` ---------------------------------------------------------------


def retire(service: Service, identity: RunIdentity, data: bytes) -> Retired:
    """Queue a request's keys for the worker (`job`: its job-lifetime keys; `all`: every one),
    which revokes them with the service's connections and deletes their secrets with its App,
    as at a run's end. Only the run attempt that made the request may: the token's repository
    (by id), run id and attempt must be the request's."""
    body = _decode_body(data, KeysRetirement)
    now = service.clock()
    with service.ledger.begin(durable=True) as conn:
        found = request_of(conn, identity.repository_id, body.request_id)
        # Another run's (or another attempt's) request is answered as an unknown one: whether
        # it exists is not this token's business.
        if found is None or (found.run_id, found.run_attempt) != (
            identity.run_id,
            identity.run_attempt,
        ):
            raise ApiError(
                404,
                "request_not_found",
                f"No request {body.request_id} in this run attempt of {identity.repository}; "
                "only the run attempt that asked for the keys may retire them",
            )
        if found.state != "granted":
            raise ApiError(
                409,
                "request_in_progress",
                f"Request {body.request_id} is still being served; ask again once it is "
                "answered (the run's end retires its keys in any case)",
            )
        # The lease rows must be the token's run's too, whatever the request row says.
        leases = [
            lease
            for lease in (get(conn, lease_id) for lease_id in found.lease_ids)
            if lease is not None
            and lease.repository_id == identity.repository_id
            and lease.run_id == identity.run_id
            and (body.scope == "all" or lease.lifetime is Lifetime.JOB)
        ]
        queued = queue(
            conn,
            LeasesById(tuple(lease.id for lease in leases)),
            actor="broker",
            reason=f"post step: retire {body.scope} keys of request {body.request_id}",
            now=now,
        )
        states = {lease.id: get(conn, lease.id) for lease in leases}
    event(
        log,
        "keys retirement asked",
        **_request_fields(identity, body.request_id),
        scope=body.scope,
        queued=queued,
    )
    if queued:
        service.wake_worker()
    return Retired(
        [RetiredLease(lease_id, row.state) for lease_id, row in states.items() if row is not None]
    )
