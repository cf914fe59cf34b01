"""The main step's plan: every input read and checked, without GitHub or the network, before
`action_src.mint` issues anything."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from action_src.inputs import (
    GitHubSettings,
    Retries,
    RunContext,
    ServiceSettings,
    environment_name,
    get_bool,
    get_input,
    read_github,
    read_retries,
    read_run,
    read_service,
    read_ttls,
)
from action_src.workflow import Workflow
from runkeys.connections import Connection, load_connections
from runkeys.errors import ConfigError
from runkeys.leases import Lifetime
from runkeys.spec import KeySpec, SpecRules, parse_keys

KEYS_EXAMPLE = "e.g. `keys: |` then `  API_TOKEN: {provider: random, ttl: 30m}`"
APP_FIX = (
    "create a GitHub App with the repository permissions Secrets: write, Environments: write, "
    "Administration: write and Actions: read; install it on this repository; store its ID and "
    "private key as secrets and pass them as `app-id` and `private-key`"
)


@dataclass(frozen=True)
class StepPlan:
    """The step, read and checked: what to mint, where to write it, who to tell."""

    run: RunContext
    specs: tuple[KeySpec, ...]
    environment: str | None  # environment secrets
    repository_secrets: bool  # repository secrets; neither: this job only
    github: GitHubSettings | None
    service: ServiceSettings | None
    retries: Retries
    connections: Mapping[str, Connection] = field(repr=False)

    @property
    def writes_secrets(self) -> bool:
        return self.environment is not None or self.repository_secrets


def read_destination(environ: Mapping[str, str], run: RunContext) -> tuple[str | None, bool]:
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
    return (environment_name(template, run) if template else None), repository_secrets


def plan_step(environ: Mapping[str, str], workflow: Workflow) -> StepPlan:
    for variable in ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STATE"):
        workflow.path(variable)
    run = read_run(environ)
    github = read_github(environ)
    service = read_service(environ)
    default_ttl, max_ttl = read_ttls(environ)
    environment, repository_secrets = read_destination(environ, run)
    keys_text = get_input(environ, "keys")
    if not keys_text:
        raise ConfigError("input `keys`", "is empty", fix=KEYS_EXAMPLE)
    connections = load_connections(environ)
    specs = parse_keys(keys_text, SpecRules(default_ttl, max_ttl, connections, run.is_pull_request))
    plan = StepPlan(
        run, specs, environment, repository_secrets, github, service, read_retries(environ),
        connections,
    )  # fmt: skip
    if plan.writes_secrets and github is None:
        where = f"environment {environment}" if environment else "repository secrets"
        raise ConfigError(
            "input `app-id`", f"is empty, and writing {where} needs GitHub credentials", fix=APP_FIX
        )
    lifetimes = {s.lifetime for s in specs}
    if service is None and lifetimes & {Lifetime.RUN, Lifetime.PR}:
        workflow.warning(
            "No `service-url`: keys with lifetime `run` or `pr` are retired only when their TTL "
            "runs out (nothing watches the run or the pull request). Set `service-url` to a "
            "runkeys service to retire them when the run ends or the pull request closes."
        )
    if service is None and Lifetime.TTL in lifetimes:
        workflow.warning(
            "No `service-url`: keys with lifetime `ttl` are retired by the runkeys service's "
            "sweeper when their TTL runs out; without one, only the provider's own expiry (if it "
            "has one) ends them, and their secrets stay. Set `service-url` to a runkeys service."
        )
    return plan
