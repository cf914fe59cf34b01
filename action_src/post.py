"""`runkeys-action-post`: the post step, in a fresh container at the end of the job. Retires the
keys the main step left for it (`job` lifetime, and any its rollback could not retire), tells the
service, and deletes the environment the main step created once nothing is left in it.

Cleanup never fails a job: every problem is a warning, and the exit status is always 0.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

from action_src.collaborators import github_session, lease_client
from action_src.inputs import read_github, read_retries, read_run, read_service
from action_src.report import STATE_NAME, PostState
from action_src.workflow import Workflow, describe
from runkeys.connections import Connection, load_connections
from runkeys.errors import GitHubError, RunkeysError
from runkeys.github.secrets import SecretStore
from runkeys.issuance import SecretScope
from runkeys.lease_client import RetireOutcome
from runkeys.leases import LeaseRequest
from runkeys.providers import ProviderDeps, Registry
from runkeys.retire import RetireRequest, retire
from runkeys.scrub import described


def _scope_of(state: PostState, repository: str) -> SecretScope | None:
    """The widest scope the leases touch, for the installation token's permissions."""
    secrets = [lease.secret for lease in state.leases if lease.secret is not None]
    environments = [s.environment for s in secrets if s.environment]
    if environments or state.created_environment:
        return SecretScope(repository, state.created_environment or environments[0])
    return SecretScope(repository) if secrets else None


def retire_leases(environ: Mapping[str, str], workflow: Workflow) -> None:
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
    now = datetime.now(UTC)
    outcomes: list[RetireOutcome] = []
    for lease in state.leases:
        if lease.expires_at <= now and service is not None:
            workflow.progress(
                f"{lease.key_name}: expired at {lease.expires_at.isoformat()}; "
                "the runkeys service retires expired keys."
            )
            continue
        outcomes.append(
            _retire_one(
                lease,
                environ=environ,
                workflow=workflow,
                registry=registry,
                connections=connections,
                store=store,
            )
        )
    if state.created_environment:
        _delete_environment(state.created_environment, store, workflow, outcomes)
    if service is not None and outcomes:
        try:
            lease_client(service, workflow, retries).retire(outcomes)
        except RunkeysError as exc:
            workflow.warning(f"Could not tell the runkeys service: {describe(exc)}")


def _retire_one(
    lease: LeaseRequest,
    *,
    environ: Mapping[str, str],
    workflow: Workflow,
    registry: Registry,
    connections: Mapping[str, Connection],
    store: SecretStore | None,
) -> RetireOutcome:
    # A provider that needs the value to revoke (an installation token) finds it where
    # GITHUB_ENV put it: the job's environment, which the runner passes to this container.
    value = environ.get(lease.key_name) or None
    request = RetireRequest.of(lease, secret=lease.secret, value=value)
    if lease.secret is not None and store is None:
        reason = f"no GitHub credentials to delete its secret in {lease.secret.scope}"
        workflow.warning(f"Could not retire {lease.key_name}: {reason}")
        return RetireOutcome(lease.id, "failed", reason)
    try:
        retired = retire(
            request,
            registry=registry,
            connections=connections,
            secrets_for=(lambda _repository: store) if store is not None else None,
        )
    except Exception as exc:
        reason = described(exc, [value])
        workflow.warning(f"Could not retire {lease.key_name}: {reason}")
        return RetireOutcome(lease.id, "failed", reason)
    deleted = " and deleted its secret" if retired.secret_deleted else ""
    workflow.progress(f"{lease.key_name}: revoked{deleted}.")
    return RetireOutcome(lease.id, "revoked")


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
    try:
        retire_leases(environ, workflow)
    except Exception as exc:
        workflow.warning(f"runkeys post step: {described(exc)}")
    return 0  # cleanup never fails the job


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
