"""`POST /v1/leases` (register) and `POST /v1/leases/retire` (the post step's report).

Every `/v1/…` route runs behind `_caller`: an action of the service's major version (when it
says its version), a body within the API's limit, a verified OIDC token,
and the App installed on the token's repository. Repository, run, attempt, environment, ref and
pull request come from that token only, through `caller()`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import msgspec
from flask import Blueprint, Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from handler.errors import ApiError
from handler.ledger.leases import LabelTakenError, LeaseConflictError, apply_reports, register
from handler.ledger.records import LeaseRecord
from handler.logs import event, logger
from handler.registration import parse_registration, parse_retire_reports
from handler.service import Service
from handler.views import current_service
from runkeys import __version__, versions
from runkeys.errors import AuthError, GitHubError
from runkeys.leases import LeaseRequest, Registered, RegisteredLease, Retired, RetiredLease
from runkeys.oidc import OIDCUnavailableError, RunIdentity

blueprint = Blueprint("leases", __name__)
# Repeated on purpose: event() calls look alike, but each names its own fields to log.
log = logger("api")


@dataclass(frozen=True)
class Caller:
    """Who called a `/v1` route: the verified token's run, and the App's installation on its
    repository."""

    identity: RunIdentity
    installation_id: int


@blueprint.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return exc.response()


@blueprint.before_request
def _caller() -> None:
    """Before every route of the blueprint, in this order: the body's size, the token, the
    App's installation on the token's repository."""
    service = current_service()
    _same_major_version()
    _limit_body(service.config.api_max_bytes)
    identity = _identity(service)
    g.runkeys_caller = Caller(identity, _installation(service, identity))


def caller() -> Caller:
    """The caller `_caller` checked for this request."""
    found = g.get("runkeys_caller")
    if not isinstance(found, Caller):
        raise RuntimeError("a /v1 route ran without the blueprint's checks")
    return found


def _same_major_version() -> None:
    """400 for an action of another major version, before its token is spent: the wire format
    may differ. Callers that send no version (curl, a proxy's probe) are not refused."""
    said = request.headers.get(versions.HEADER)
    why = None if said is None else versions.mismatch(said, they="the action", we="this service")
    if why is not None:
        raise ApiError(
            400,
            "incompatible_version",
            f"{why}. Use the action's tag of this major version "
            f"(`uses: OWNER/runkeys@v{versions.series(__version__)}`) or upgrade the service",
        )


def _limit_body(limit: int) -> None:
    """413 for a body over `limit`, before the token is looked at: by its Content-Length, or
    for a chunked body, by reading at most one byte more than `limit` of it now (werkzeug's
    limited stream stops at its limit without a word: one byte past it says there is more)."""
    too_large = ApiError(
        413,
        "request_entity_too_large",
        f"The body is larger than the {limit} bytes the API accepts (RUNKEYS_API_MAX_BYTES)",
    )
    if request.content_length is not None:
        request.max_content_length = limit
        if request.content_length > limit:
            raise too_large
        return
    request.max_content_length = limit + 1
    try:
        read = len(request.get_data(cache=True))
    except RequestEntityTooLarge:
        raise too_large from None
    if read > limit:
        raise too_large


def _identity(service: Service) -> RunIdentity:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        service.metrics.token_failures.inc()
        raise ApiError(401, "missing_token", "Send the job's OIDC token as `Bearer <token>`")
    try:
        return service.verifier.verify(token.strip())
    except AuthError as exc:
        service.metrics.token_failures.inc()
        event(log, "token refused", level=logging.WARNING, reason=exc.cause, path=request.path)
        raise ApiError(401, "invalid_token", exc.explain()) from None
    except OIDCUnavailableError as exc:
        event(log, "OIDC issuer unreachable", level=logging.ERROR, reason=exc.cause)
        raise ApiError(503, "oidc_unavailable", "The service cannot verify tokens now") from None


def _json() -> bytes:
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json")
    return request.get_data(cache=True)


def _answer(body: msgspec.Struct, status: int = 200) -> Response:
    return Response(msgspec.json.encode(body), status=status, mimetype="application/json")


def _installation(service: Service, identity: RunIdentity) -> int:
    """The App must be installed on the token's repository: any repository on GitHub can get
    a token for our audience, only those that installed the App may use the API."""
    found = _installation_of(service, identity.repository)
    if found is None:
        raise ApiError(
            403,
            "not_installed",
            f"The runkeys GitHub App is not installed on {identity.repository}",
        )
    return found


def _installation_of(service: Service, repository: str) -> int | None:
    """The App's installation that reaches `repository`; None if none does."""
    try:
        return service.installations(repository)
    except GitHubError as exc:
        event(log, "GitHub unavailable", level=logging.ERROR, reason=exc.cause)
        raise ApiError(503, "github_unavailable", "GitHub did not answer; retry") from None


def _check_repositories(
    service: Service, identity: RunIdentity, installation_id: int, leases: list[LeaseRequest]
) -> None:
    """A lease whose revoke acts on a GitHub repository (a deploy key) must be for one of the
    token's own account, reached through the same installation: the token proves only who its
    run is, and the service will act there with that installation's rights. Another account's
    repositories are another installation's business, even where the App is installed too."""
    for lease in leases:
        repository = service.registry.get(lease.provider).github_repository(lease.reference)
        if repository is None or repository.lower() == identity.repository.lower():
            continue
        name = f"lease {lease.id} ({lease.key_name})"
        if repository.partition("/")[0].lower() != identity.owner.lower():
            raise ApiError(
                422,
                "foreign_repository",
                f"{name}: {repository} is not a repository of {identity.owner}, the token's "
                "owner; runkeys revokes only in its own account's repositories",
            )
        if _installation_of(service, repository) != installation_id:
            raise ApiError(
                422,
                "foreign_repository",
                f"{name}: the runkeys GitHub App's installation on {identity.repository} cannot "
                f"reach {repository}, so the service could not revoke there; add it to the "
                "installation",
            )


@blueprint.post("/v1/leases")
def register_leases() -> Response:
    service = current_service()
    identity, installation_id = caller().identity, caller().installation_id
    now = service.clock()
    requests = parse_registration(
        _json(),
        identity=identity,
        registry=service.registry,
        connections=service.config.connections,
        max_ttl=service.config.max_ttl,
        now=now,
    )
    _check_repositories(service, identity, installation_id, requests)
    try:
        with service.ledger.begin(durable=True) as conn:  # a lost lease is a key never retired
            registered = register(
                conn, identity, requests, installation_id=installation_id, now=now
            )
    except LabelTakenError as exc:
        raise ApiError(
            409,
            "label_taken",
            f"Lease {exc.lease_id}: its label {exc.label} is already leased; make new ids",
        ) from None
    except LeaseConflictError as exc:
        raise ApiError(
            409, "lease_conflict", f"Lease id {exc.lease_id} is already taken; make new ids"
        ) from None
    service.metrics.leases_registered.inc(registered.created)
    event(
        log,
        "leases registered",
        repository=identity.repository,
        run_id=identity.run_id,
        run_attempt=identity.run_attempt,
        leases=[lease.id for lease in registered.leases],
        created=registered.created,
    )
    answer = Registered(
        [RegisteredLease(lease.id, lease.state, lease.expires_at) for lease in registered.leases]
    )
    return _answer(answer, 201 if registered.created else 200)


@blueprint.post("/v1/leases/retire")
def retire_leases() -> Response:
    service = current_service()
    identity = caller().identity
    reports = parse_retire_reports(_json())
    with service.ledger.begin() as conn:
        reported = apply_reports(conn, identity, reports, now=service.clock())
    not_found = reported.not_found
    event(
        log,
        "post step reported",
        repository=identity.repository,
        run_id=identity.run_id,
        revoked=[r.lease_id for r in reports if r.outcome == "revoked"],
        failed=[r.lease_id for r in reports if r.outcome == "failed"],
        secrets_kept={k: v for k, v in reported.secret_kept_for.items() if v is not None},
        not_found=not_found,
    )
    if any(r.outcome == "failed" for r in reports):
        service.wake_worker()
    results = [_retired(lease, reported.secret_kept_for) for lease in reported.found]
    if not_found:
        raise ApiError(
            404,
            "lease_not_found",
            f"No lease {', '.join(not_found)} in this run of {identity.repository}",
            extra={"not_found": not_found, "leases": msgspec.to_builtins(results)},
        )
    return _answer(Retired(results))


def _retired(lease: LeaseRecord, secret_kept_for: dict[str, str | None]) -> RetiredLease:
    """A lease's state; and, when the post step asked, whether it may delete its secret."""
    kept = secret_kept_for.get(lease.id) if lease.id in secret_kept_for else msgspec.UNSET
    return RetiredLease(lease.id, lease.state, kept)
