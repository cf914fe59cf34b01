"""What each webhook means for the ledger, as pure functions (gidgethub's `routing.Router`):
a route reads a verified delivery and says which leases to retire. The view applies that to the
ledger in one transaction; nothing here does I/O.

Payloads: https://docs.github.com/webhooks/webhook-events-and-payloads
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from handler.ledger.alerts import AlertCheck
from handler.ledger.queue import (
    InstallationLeases,
    PullRequestLeases,
    RepositoryLeases,
    RunLeases,
    Selection,
)
from handler.webhooks import BadDeliveryError, Delivery, as_id
from runkeys.github.paths import UnsafePathSegment, repository_path
from runkeys.github.secrets import github_time
from runkeys.ids import MAX_ID, MAX_NUMBER, describe


class Outcome(StrEnum):
    QUEUED = "queued"  # a route ran; its retirements were queued (maybe none matched)
    PONG = "pong"  # ping
    IGNORED = "ignored"  # no route for this event and action
    DUPLICATE = "duplicate"  # a redelivery of a delivery already handled


@dataclass(frozen=True)
class Retirement:
    selection: Selection
    # The App lost access to the repositories: revoke at the provider only, their secrets and
    # environments went with the access.
    provider_only: bool = False


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    retirements: tuple[Retirement, ...] = field(default_factory=tuple)
    # Secret scanning alerts for the worker to fetch and match (`handler.leaks`).
    alerts: tuple[AlertCheck, ...] = field(default_factory=tuple)


Route = Callable[[Delivery], Decision]
MAX_FULL_NAME = 200  # the ledger's column


class Router:
    """`@router.register("workflow_run", action="completed")`; `dispatch(delivery)`."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str | None], Route] = {}

    def register(self, event: str, *, action: str | None = None) -> Callable[[Route], Route]:
        def add(route: Route) -> Route:
            if (event, action) in self._routes:
                raise ValueError(f"{event}.{action} already has a route")
            self._routes[(event, action)] = route
            return route

        return add

    def dispatch(self, delivery: Delivery) -> Decision:
        route = self._routes.get((delivery.event, delivery.action)) or self._routes.get(
            (delivery.event, None)
        )
        if route is None:
            return Decision(Outcome.IGNORED)
        return route(delivery)


router = Router()


def _object(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise BadDeliveryError(f"The payload has no {key!r} object")
    return value


def _id(data: Mapping[str, Any], key: str, where: str, maximum: int = MAX_ID) -> int:
    value = as_id(data.get(key), maximum)
    if value is None:
        raise BadDeliveryError(f"The payload's {where}.{key} is missing or not {describe(maximum)}")
    return value


def _time(data: Mapping[str, Any], key: str, where: str) -> datetime:
    value = data.get(key)
    try:
        return github_time(value)
    except (TypeError, ValueError):
        raise BadDeliveryError(f"The payload's {where}.{key} is missing or not a time") from None


def _installation_id(delivery: Delivery) -> int | None:
    """The delivery's installation (None without one); an installation whose id is not one
    is refused: without it a route would select leases of every installation."""
    if "installation" not in delivery.data:
        return None
    return _id(_object(delivery.data, "installation"), "id", "installation")


def _full_name(repository: Mapping[str, Any]) -> str:
    """The repository's `owner/name`, one that makes a path to ask GitHub at (no dot segment)."""
    full_name = repository.get("full_name")
    try:
        if not isinstance(full_name, str) or len(full_name) > MAX_FULL_NAME:
            raise ValueError(full_name)
        repository_path(full_name)
    except (ValueError, UnsafePathSegment):
        raise BadDeliveryError(
            "The payload's repository.full_name is missing or not owner/name"
        ) from None
    return full_name


def _repository_ids(data: Mapping[str, Any], key: str) -> tuple[int, ...]:
    listed = data.get(key) or []
    if not isinstance(listed, list):
        raise BadDeliveryError(f"The payload's {key} is not a list")
    ids = set()
    for index, repository in enumerate(listed):
        if not isinstance(repository, Mapping):
            raise BadDeliveryError(f"The payload's {key}[{index}] is not an object")
        ids.add(_id(repository, "id", f"{key}[{index}]"))
    return tuple(sorted(ids))


@router.register("ping")
def ping(delivery: Delivery) -> Decision:
    return Decision(Outcome.PONG)


@router.register("workflow_run", action="completed")
def workflow_run_completed(delivery: Delivery) -> Decision:
    """`run` leases of this run attempt (and earlier ones), and `job` leases the post step
    missed. Re-runs keep the run id and raise `run_attempt`
    (https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run-attempt)."""
    run = _object(delivery.data, "workflow_run")
    repository = _object(delivery.data, "repository")
    selection = RunLeases(
        repository_id=_id(repository, "id", "repository"),
        run_id=_id(run, "id", "workflow_run"),
        up_to_attempt=_id(run, "run_attempt", "workflow_run", MAX_NUMBER),
        installation_id=_installation_id(delivery),
    )
    return Decision(Outcome.QUEUED, (Retirement(selection),))


@router.register("pull_request", action="closed")
def pull_request_closed(delivery: Delivery) -> Decision:
    """`pr` leases of this pull request registered before it closed, merged or not. The
    delivery id is not signed, so a captured delivery can be sent again under a new one: its
    signed `closed_at` keeps it from retiring what a reopened pull request registered since."""
    repository = _object(delivery.data, "repository")
    selection = PullRequestLeases(
        repository_id=_id(repository, "id", "repository"),
        number=_id(delivery.data, "number", "payload", MAX_NUMBER),
        # GitHub's times are whole seconds: a lease registered in the closing second is before.
        registered_before=_time(_object(delivery.data, "pull_request"), "closed_at", "pull_request")
        + timedelta(seconds=1),
        installation_id=_installation_id(delivery),
    )
    return Decision(Outcome.QUEUED, (Retirement(selection),))


@router.register("installation", action="deleted")
def installation_deleted(delivery: Delivery) -> Decision:
    """The App was uninstalled: every lease of the installation, at the provider only."""
    installation = _object(delivery.data, "installation")
    installation_id = _id(installation, "id", "installation")
    account = installation.get("account")
    if account is not None and not isinstance(account, Mapping):
        raise BadDeliveryError("The payload's installation.account is not an object")
    account_id = _id(account, "id", "installation.account") if account is not None else None
    retirements = [Retirement(InstallationLeases(installation_id, account_id), provider_only=True)]
    repositories = _repository_ids(delivery.data, "repositories")
    if repositories:
        retirements.append(
            Retirement(RepositoryLeases(repositories, installation_id), provider_only=True)
        )
    return Decision(Outcome.QUEUED, tuple(retirements))


@router.register("installation_repositories", action="removed")
def installation_repositories_removed(delivery: Delivery) -> Decision:
    """Repositories taken out of the installation: their leases, at the provider only."""
    installation_id = _id(_object(delivery.data, "installation"), "id", "installation")
    repositories = _repository_ids(delivery.data, "repositories_removed")
    if not repositories:
        return Decision(Outcome.QUEUED)
    selection = RepositoryLeases(repositories, installation_id)
    return Decision(Outcome.QUEUED, (Retirement(selection, provider_only=True),))


# GitHub found a secret in a repository, or found it again: the worker fetches the alert (the
# payload has no value) and retires the repository's lease whose fingerprint it is.
ALERT_ACTIONS = ("created", "publicly_leaked", "reopened")


def secret_scanning_alert(delivery: Delivery) -> Decision:
    """The alert to look at, in the repository the signed delivery names (by id: the
    repository's name is only where to ask GitHub). What the payload says of the secret
    (`secret_type`, `validity`) decides nothing: the fingerprint of GitHub's answer does."""
    repository = _object(delivery.data, "repository")
    check = AlertCheck(
        repository_id=_id(repository, "id", "repository"),
        repository=_full_name(repository),
        number=_id(_object(delivery.data, "alert"), "number", "alert", MAX_NUMBER),
        installation_id=_installation_id(delivery),
    )
    return Decision(Outcome.QUEUED, alerts=(check,))


for _action in ALERT_ACTIONS:
    router.register("secret_scanning_alert", action=_action)(secret_scanning_alert)
