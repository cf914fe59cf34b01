"""`runkeys-action`: the main step. Reads the inputs, checks everything, then hands every
collaborator to `runkeys.issuance.issue`: mint, register, write, deliver (or roll back)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from types import FrameType
from typing import TextIO

from action_src.collaborators import ActionJob, github_session, lease_client
from action_src.inputs import (
    RunContext,
    environment_name,
    get_bool,
    get_input,
    read_github,
    read_retries,
    read_run,
    read_service,
    read_ttls,
)
from action_src.report import summary
from action_src.workflow import Workflow
from runkeys.connections import load_connections
from runkeys.errors import ConfigError, GitHubError, RunkeysError
from runkeys.github.secrets import SecretStore
from runkeys.issuance import Collaborators, SecretScope, issue
from runkeys.leases import Lifetime
from runkeys.providers import ProviderDeps, Registry
from runkeys.scrub import short
from runkeys.spec import SpecRules, parse_keys

KEYS_EXAMPLE = "e.g. `keys: |` then `  API_TOKEN: {provider: random, ttl: 30m}`"
APP_FIX = (
    "create a GitHub App with the repository permissions Secrets: write, Environments: write, "
    "Administration: write and Actions: read; install it on this repository; store its ID and "
    "private key as secrets and pass them as `app-id` and `private-key`"
)


def read_scope(environ: Mapping[str, str], run: RunContext) -> SecretScope | None:
    """Where the secrets go: an environment (`environment`), the repository
    (`repository-secrets: true`), or nowhere (the keys are for this job only)."""
    template = get_input(environ, "environment")
    repository_secrets = get_bool(environ, "repository-secrets")
    if template and repository_secrets:
        raise ConfigError(
            "input `repository-secrets`",
            "is true while `environment` is set",
            fix="choose one: environment secrets (read by later jobs of this run) or "
            "repository secrets (read by later runs)",
        )
    if template:
        return SecretScope(run.repository, environment_name(template, run))
    return SecretScope(run.repository) if repository_secrets else None


def run(environ: Mapping[str, str], workflow: Workflow) -> int:
    for variable in ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STATE"):
        workflow.path(variable)
    context = read_run(environ)
    retries = read_retries(environ)
    github = read_github(environ, retries)
    service = read_service(environ)
    default_ttl, max_ttl = read_ttls(environ)
    scope = read_scope(environ, context)
    keys_text = get_input(environ, "keys")
    if not keys_text:
        raise ConfigError("input `keys`", "is empty", fix=KEYS_EXAMPLE)
    connections = load_connections(environ)
    rules = SpecRules(default_ttl, max_ttl, connections, context.is_pull_request)
    specs = parse_keys(keys_text, rules)
    if scope is not None and github is None:
        raise ConfigError(
            "input `app-id`",
            f"is empty, and writing {scope.describe()} needs GitHub credentials",
            fix=APP_FIX,
        )
    leases = lease_client(service, workflow, retries) if service else None
    if service is None and any(s.lifetime is not Lifetime.JOB for s in specs):
        workflow.warning(
            "No `service-url`: keys with lifetime `run` or `pr` are retired only when their TTL "
            "runs out (nothing watches the run or the pull request). Set `service-url` to a "
            "runkeys service to retire them when the run ends or the pull request closes."
        )
    session = github_session(github, scope) if github else None
    store = SecretStore(session, context.repository) if session and scope else None
    deps = Collaborators(
        registry=Registry(ProviderDeps(github=session)),
        connections=connections,
        job=ActionJob(workflow),
        secrets=store,
        leases=leases,
    )
    try:
        issued = issue(specs, scope, deps)
    except GitHubError as exc:
        if github is not None and github.app is None and exc.status in (401, 403, 404):
            raise GitHubError(
                f"{exc.cause}. A workflow's GITHUB_TOKEN cannot write secrets or create "
                "environments (its permissions have no secrets or administration scope), and "
                "`github-token` was refused here",
                status=exc.status,
                fix=APP_FIX,
            ) from None
        raise
    try:
        workflow.summary(summary(issued, service_url=service.url if service else None))
    except RunkeysError as exc:  # the keys are out; a missing summary only deserves a warning
        workflow.warning(exc.explain())
    return 0


def _interrupted(signum: int, frame: FrameType | None) -> None:
    # A cancelled job stops the container: turn that into an exception so rollback runs.
    raise KeyboardInterrupt(f"signal {signum}")


def main(environ: Mapping[str, str] | None = None, stdout: TextIO | None = None) -> int:
    environ = os.environ if environ is None else environ
    workflow = Workflow(environ, stdout or sys.stdout)
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        return run(environ, workflow)
    except RunkeysError as exc:
        return workflow.die(exc)
    except KeyboardInterrupt:
        return workflow.die(RunkeysError("the step was cancelled; minted keys were rolled back"))
    except Exception as exc:  # a bug; values were scrubbed by issuance if any existed
        return workflow.die(
            RunkeysError(
                f"runkeys failed unexpectedly: {short(f'{type(exc).__name__}: {exc}', 300)}",
                fix="re-run the job; if it fails again, report it with this message",
            )
        )


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
