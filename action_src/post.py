"""`runkeys-action-post`: the post step, in a fresh container at the end of the job. Retires the
keys the main step left for it and deletes the environment the main step created once empty.

With a service it reports the keys first and keeps the secrets its answer says a newer live lease
wrote; without one every secret is deleted by name. Cleanup never fails a job (exit status 0)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

import msgspec

from action_src.brokered import STATE_NAME as BROKER_STATE
from action_src.brokered import BrokerState
from action_src.collaborators import github_session, lease_client
from action_src.inputs import read_github, read_retries, read_run, read_service
from action_src.report import STATE_NAME, PostState
from action_src.workflow import Workflow, describe
from runkeys.broker import KeysRetirement
from runkeys.connections import Connection, connection_secrets, load_connections
from runkeys.errors import ConfigError, GitHubError, RunkeysError
from runkeys.github.secrets import SecretStore
from runkeys.issuance import SecretScope
from runkeys.lease_client import LeaseClient
from runkeys.leases import LeaseRequest, RetireOutcome
from runkeys.providers import ProviderDeps, Registry
from runkeys.retire import RetireRequest, delete_secret, revoke
from runkeys.scrub import described


def _scope_of(state: PostState, repository: str) -> SecretScope | None:
    """The widest scope the leases touch, for the installation token's permissions."""
    secrets = [lease.secret for lease in state.leases if lease.secret is not None]
    environments = [s.environment for s in secrets if s.environment]
    if environments or state.created_environment:
        return SecretScope(repository, state.created_environment or environments[0])
    return SecretScope(repository) if secrets else None


def retire_brokered(text: str, environ: Mapping[str, str], workflow: Workflow) -> None:
    """Broker mode: the runner holds no connection and no App key, so it cannot revoke or
    delete anything itself; it asks the service to retire the request's keys."""
    try:
        state = msgspec.json.decode(text, type=BrokerState)
    except msgspec.DecodeError as exc:
        raise ConfigError(
            f"STATE_{BROKER_STATE}",
            f"the main step's state cannot be read ({exc})",
            fix="use the same version of runkeys for the main and the post step",
        ) from None
    if state.retire == "none":
        workflow.progress("runkeys post: nothing to retire.")
        return
    service = read_service(environ)
    if service is None:
        raise ConfigError(
            "input `service-url`",
            "is empty in the post step, but the main step's keys came from the runkeys service",
            fix="keep the step's `with:` as it was; the service's TTL sweeper retires the keys",
        )
    client = lease_client(service, workflow, read_retries(environ))
    retired = client.retire_keys(KeysRetirement(request_id=state.request_id, scope=state.retire))
    which = "`job` " if state.retire == "job" else ""
    workflow.progress(
        f"runkeys post: the runkeys service retires {len(retired)} {which}key(s) of this step "
        "and deletes their secrets."
    )


def retire_leases(environ: Mapping[str, str], workflow: Workflow) -> None:
    if broker := environ.get(f"STATE_{BROKER_STATE}", ""):
        retire_brokered(broker, environ, workflow)
        return
    text = environ.get(f"STATE_{STATE_NAME}", "")
    state = PostState.from_text(text) if text else PostState(())
    if not state.leases and not state.created_environment:
        workflow.progress("runkeys post: nothing to retire.")
        return
    context = read_run(environ)
    retries = read_retries(environ)
    github = read_github(environ)
    service = read_service(environ)
    scope = _scope_of(state, context.repository)
    providers = [lease.provider for lease in state.leases]
    session = github_session(github, scope, retries, providers) if github else None
    store = SecretStore(session, context.repository) if session and scope else None
    registry = Registry(ProviderDeps(github=session))
    connections = load_connections(environ)
    client = lease_client(service, workflow, retries) if service is not None else None
    now = datetime.now(UTC)
    revoked: list[tuple[LeaseRequest, RetireRequest]] = []
    outcomes: list[RetireOutcome] = []
    for lease in state.leases:
        if lease.expires_at <= now and client is not None:
            workflow.progress(
                f"{lease.key_name}: expired at {lease.expires_at.isoformat()}; "
                "the runkeys service retires expired keys."
            )
            continue
        request = _revoke_one(
            lease,
            environ=environ,
            workflow=workflow,
            registry=registry,
            connections=connections,
            store=store,
        )
        if isinstance(request, RetireOutcome):
            outcomes.append(request)
            continue
        revoked.append((lease, request))
        outcomes.append(RetireOutcome(lease.id, "revoked", secret_pending=lease.secret is not None))
    kept_for = _report(client, outcomes, workflow) if client is not None else {}
    environment = state.created_environment
    went, held = set[str](), False
    if environment and not any(o.outcome == "failed" for o in outcomes):
        went, held = _environment_at_once(environment, revoked, kept_for, store, workflow)
    not_deleted = [
        _finish_one(lease, request, kept_for.get(lease.id), store, workflow)
        for lease, request in revoked
        if lease.id not in went
    ]
    failed = [outcome for outcome in not_deleted if outcome is not None]
    if client is not None and failed:
        _report(client, failed, workflow)  # the worker deletes those secrets instead
    if held:
        workflow.progress(f"Environment {environment} still holds secrets; it is kept.")
    elif environment and not went:
        _delete_environment(environment, store, workflow, outcomes + failed)


def _environment_at_once(
    environment: str,
    revoked: list[tuple[LeaseRequest, RetireRequest]],
    kept_for: Mapping[str, str],
    store: SecretStore | None,
    workflow: Workflow,
) -> tuple[set[str], bool]:
    """Delete the environment the main step created, its secrets with it, when it holds only
    the secrets of the keys just revoked: one DELETE instead of one per secret (GitHub's
    write budget, issue 16). The leases whose secret went with it; and whether it holds
    another secret (so it stays). Neither, when the read or the DELETE failed: each secret is
    then deleted alone and the environment tried again after."""
    if store is None:
        return set(), False
    inside = [
        lease
        for lease, _ in revoked
        if lease.secret is not None
        and lease.secret.environment is not None
        and lease.secret.environment.lower() == environment.lower()
    ]
    ours = {
        lease.secret.name.upper() for lease in inside if lease.secret and lease.id not in kept_for
    }
    try:
        if not store.names(environment) <= ours:
            return set(), True
        store.delete_environment(environment)
    except Exception as exc:
        workflow.warning(f"Could not delete environment {environment}: {described(exc)}")
        return set(), False
    for lease in inside:
        workflow.progress(f"{lease.key_name}: revoked; its secret went with the environment.")
    workflow.progress(f"Deleted environment {environment}, which runkeys had created.")
    return {lease.id for lease in inside}, False


def _report(
    client: LeaseClient, outcomes: list[RetireOutcome], workflow: Workflow
) -> dict[str, str]:
    """Tell the service; its answer: the secrets a newer live lease wrote since (keep those).
    A service that cannot be reached only costs a warning: the secrets are then deleted by name,
    as without a service."""
    if not outcomes:
        return {}
    try:
        return client.retire(outcomes)
    except RunkeysError as exc:
        pending = any(outcome.secret_pending for outcome in outcomes)
        fallback = (
            " Its secrets are deleted by name, without knowing whether a newer run's key wrote "
            "them since."
            if pending
            else ""
        )
        workflow.warning(f"Could not tell the runkeys service: {describe(exc)}.{fallback}")
        return {}


def _revoke_one(
    lease: LeaseRequest,
    *,
    environ: Mapping[str, str],
    workflow: Workflow,
    registry: Registry,
    connections: Mapping[str, Connection],
    store: SecretStore | None,
) -> RetireRequest | RetireOutcome:
    """Revoke the key at its provider: what is left to do about its secret, or the failure."""
    # A provider that needs the value to revoke (an installation token) finds it where
    # GITHUB_ENV put it: the job's environment, which the runner passes to this container.
    value = environ.get(lease.key_name) or None
    request = RetireRequest.of(lease, secret=lease.secret, value=value)
    if lease.secret is not None and store is None:
        reason = f"no GitHub credentials to delete its secret in {lease.secret.scope}"
        workflow.warning(f"Could not retire {lease.key_name}: {reason}")
        return RetireOutcome(lease.id, "failed", reason)
    try:
        revoke(request, registry=registry, connections=connections)
    except Exception as exc:
        reason = described(exc, [value])
        workflow.warning(f"Could not retire {lease.key_name}: {reason}")
        return RetireOutcome(lease.id, "failed", reason)
    return request


def _finish_one(
    lease: LeaseRequest,
    request: RetireRequest,
    kept_for: str | None,
    store: SecretStore | None,
    workflow: Workflow,
) -> RetireOutcome | None:
    """Delete the secret of a revoked key, unless a newer run's key wrote it since (the
    service said so: `kept_for`). The failure to report, if the delete failed."""
    if kept_for is not None:
        workflow.progress(
            f"{lease.key_name}: revoked; its secret was kept: a newer run's key wrote it since."
        )
        return None
    try:
        deleted = store is not None and delete_secret(request, lambda _repository: store)
    except Exception as exc:
        reason = described(exc, [request.value])
        workflow.warning(f"Could not retire {lease.key_name}: it is revoked, but {reason}")
        return RetireOutcome(lease.id, "failed", reason)
    workflow.progress(f"{lease.key_name}: revoked{' and deleted its secret' if deleted else ''}.")
    return None


def _delete_environment(
    environment: str,
    store: SecretStore | None,
    workflow: Workflow,
    outcomes: list[RetireOutcome],
) -> None:
    """Delete the environment the main step created, unless something still lives in it (a
    `run` key, another job's secret) or a key in it could not be retired."""
    if store is None or any(o.outcome == "failed" for o in outcomes):
        return
    try:
        if store.names(environment):
            workflow.progress(f"Environment {environment} still holds secrets; it is kept.")
            return
        store.delete_environment(environment)
    except GitHubError as exc:
        if exc.status == 404:
            return  # already gone
        workflow.warning(f"Could not delete environment {environment}: {described(exc)}")
        return
    except Exception as exc:
        workflow.warning(f"Could not delete environment {environment}: {described(exc)}")
        return
    workflow.progress(f"Deleted environment {environment}, which runkeys had created.")


def main(environ: Mapping[str, str] | None = None, stdout: TextIO | None = None) -> int:
    environ = os.environ if environ is None else environ
    workflow = Workflow(environ, stdout or sys.stdout)
    workflow.hide(connection_secrets(environ))  # before anything can print, as in main
    try:
        retire_leases(environ, workflow)
    except Exception as exc:
        workflow.warning(f"runkeys post step: {described(exc)}")
    return 0  # cleanup never fails the job


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
