"""The main step's plan: every input read and checked, without GitHub or the network, before
`action_src.mint` issues anything."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from action_src.inputs import (
    DEFAULT_TTL,
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
from runkeys.broker import Destination
from runkeys.connections import PREFIX, Connection, load_connections
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


@dataclass(frozen=True)
class BrokerPlan:
    """Broker mode, read and checked: the service mints with its own connections and writes
    the secrets with its own App; the step sends the spec and the destination as written."""

    run: RunContext
    specs: tuple[KeySpec, ...]
    keys_text: str
    destination: Destination
    environment: str | None  # the name filled here, for messages; the service fills its own
    service: ServiceSettings
    retries: Retries


LOCAL_INPUTS = ("app-id", "private-key", "github-token")


def local_credentials(environ: Mapping[str, str]) -> list[str]:
    """What the step holds that only local mode uses: App or token inputs, connection URLs."""
    found = [f"input `{name}`" for name in LOCAL_INPUTS if get_input(environ, name)]
    found += sorted(name for name in environ if name.upper().startswith(PREFIX))
    return found


MODES = ("auto", "broker", "local")


def is_broker_mode(environ: Mapping[str, str]) -> bool:
    """The `mode` input. `auto` (the default) is broker mode when `service-url` is set and the
    step holds no local credential; any local credential keeps local mode, as before broker
    mode existed. `broker` with a local credential is an error naming what to remove."""
    mode = get_input(environ, "mode") or "auto"
    if mode not in MODES:
        raise ConfigError(
            "input `mode`", f"{mode!r} is not a mode", fix="use auto, broker or local"
        )
    if mode == "local":
        return False
    held = local_credentials(environ)
    if mode == "broker":
        if not get_input(environ, "service-url"):
            raise ConfigError(
                "input `service-url`",
                "is empty, and broker mode asks a runkeys service for the keys",
                fix="set `service-url` to the runkeys service, or use `mode: local`",
            )
        if held:
            raise ConfigError(
                "input `mode`",
                f"is broker, but the step also holds {', '.join(held)}: in broker mode the "
                "runkeys service mints and writes, and the job must hold no App key and no "
                "connection",
                fix=f"remove {', '.join(held)} from the step (and its secrets from the "
                "workflow), or use `mode: local`",
            )
        return True
    return bool(get_input(environ, "service-url")) and not held


def plan_broker(environ: Mapping[str, str], workflow: Workflow) -> BrokerPlan:
    """Everything the action can check before it asks the service; the service checks the spec
    again with its own connections and policy."""
    for variable in ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STATE"):
        workflow.path(variable)
    run = read_run(environ)
    service = read_service(environ)
    assert service is not None  # is_broker_mode
    default_ttl, max_ttl = read_ttls(environ)
    if get_input(environ, "default-ttl") not in ("", DEFAULT_TTL):
        # The request carries the spec as written; the service applies its own default.
        raise ConfigError(
            "input `default-ttl`",
            "is not used in broker mode: the runkeys service gives keys without `ttl` its own "
            f"default ({DEFAULT_TTL})",
            fix="remove `default-ttl` and write `ttl:` on the keys that need another TTL",
        )
    template = get_input(environ, "environment")
    environment, repository_secrets = read_destination(environ, run)
    keys_text = get_input(environ, "keys")
    if not keys_text:
        raise ConfigError("input `keys`", "is empty", fix=KEYS_EXAMPLE)
    # No connections here: the service owns them, and checks `connection:` against its own.
    specs = parse_keys(keys_text, SpecRules(default_ttl, max_ttl, None, run.is_pull_request))
    if template:
        destination = Destination(kind="environment", environment=template)
    else:
        destination = Destination(kind="repository" if repository_secrets else "job")
    return BrokerPlan(
        run, specs, keys_text, destination, environment, service, read_retries(environ)
    )


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
        fix = APP_FIX
        if service is not None:  # a broker-mode step with connection URLs left in its env
            held = ", ".join(local_credentials(environ))
            fix = (
                f"for broker mode (the runkeys service mints and writes), remove {held} from "
                f"the step; for local mode, {APP_FIX}"
            )
        raise ConfigError(
            "input `app-id`", f"is empty, and writing {where} needs GitHub credentials", fix=fix
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
