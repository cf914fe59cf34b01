"""The `keys` input: secret name → provider, parameters, TTL, lifetime and connection
(README.md, "The `keys` input").

Parsed and checked in full before any side effect, every problem collected (not just the first),
so one failed run shows everything to fix."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import yaml

from runkeys.connections import Connection, env_var, normalize_name
from runkeys.durations import format_duration, parse_duration
from runkeys.errors import ParamError, SpecError, SpecProblem
from runkeys.leases import Lifetime
from runkeys.names import secret_name_problem
from runkeys.providers import provider_class

COMMON_FIELDS = ("provider", "ttl", "lifetime", "connection")
MAX_KEYS = 100  # GitHub's cap of secrets per scope; more could never be delivered


@dataclass(frozen=True)
class KeySpec:
    name: str
    provider: str
    ttl: timedelta
    lifetime: Lifetime
    connection: str | None = None  # normalized connection name
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SpecRules:
    """What the spec is checked against besides itself."""

    default_ttl: timedelta = timedelta(hours=1)
    max_ttl: timedelta = timedelta(hours=24)
    # Connections the step can see; None skips the check (a service-side re-parse, say).
    connections: Mapping[str, Connection] | None = None
    # Whether the run belongs to a pull request; None when unknown. `pr` lifetimes need one.
    pull_request: bool | None = None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a spec must not lose a key that way."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load_yaml(text: str) -> Any:
    """The spec's YAML, or a SpecError that says where it is broken."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except (yaml.YAMLError, ValueError, LookupError, AttributeError) as exc:
        # SafeLoader's constructors raise plain ValueError, KeyError or AttributeError, with no
        # mark, for a tagged scalar that is not of its type (`!!int x`, `!!timestamp x`).
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or (
            str(exc).splitlines()[0]
            if isinstance(exc, yaml.YAMLError)
            else "a `!!` tagged value is not of its type"
        )
        raise SpecError(
            [SpecProblem(None, None, f"not valid YAML{where}: {problem}", "check the indentation")]
        ) from None


def parse_keys(text: str, rules: SpecRules | None = None) -> tuple[KeySpec, ...]:
    """Every key of the spec, checked; a SpecError listing every problem otherwise."""
    rules = rules or SpecRules()
    document = load_yaml(text)
    if not isinstance(document, Mapping) or not document:
        raise SpecError(
            [
                SpecProblem(
                    None,
                    None,
                    "expected a mapping of secret names to key definitions",
                    "e.g. `API_TOKEN: {provider: random, ttl: 30m}`",
                )
            ]
        )
    problems: list[SpecProblem] = []
    specs: list[KeySpec] = []
    seen: dict[str, str] = {}
    if len(document) > MAX_KEYS:
        problems.append(
            SpecProblem(
                None, None, f"{len(document)} keys; a secret scope holds at most {MAX_KEYS}"
            )
        )
    for raw_name, body in document.items():
        name = str(raw_name)
        if not isinstance(raw_name, str):
            problems.append(
                SpecProblem(name, None, "a key name must be a string", "quote it in the YAML")
            )
            continue
        if why := secret_name_problem(name):
            problems.append(SpecProblem(name, None, why, "rename the key"))
            continue
        if name.upper() in seen:
            problems.append(
                SpecProblem(
                    name,
                    None,
                    f"same name as {seen[name.upper()]} (secret names ignore case)",
                    "give each key its own name",
                )
            )
            continue
        seen[name.upper()] = name
        spec = _parse_one(name, body, rules, problems)
        if spec is not None:
            specs.append(spec)
    if problems:
        raise SpecError(problems)
    return tuple(specs)


def _parse_one(
    name: str, body: Any, rules: SpecRules, problems: list[SpecProblem]
) -> KeySpec | None:
    if not isinstance(body, Mapping):
        problems.append(
            SpecProblem(name, None, "expected a mapping", "e.g. `{provider: random, ttl: 30m}`")
        )
        return None
    before = len(problems)
    provider_name = body.get("provider")
    provider = None
    if not isinstance(provider_name, str):
        problems.append(SpecProblem(name, "provider", "missing", "add `provider: random`, say"))
    else:
        try:
            provider = provider_class(provider_name)
        except ParamError as exc:
            problems.append(SpecProblem(name, "provider", exc.cause, exc.fix))

    ttl = _ttl(name, body.get("ttl"), rules, provider.max_ttl if provider else None, problems)
    lifetime = _lifetime(name, body.get("lifetime", Lifetime.RUN.value), rules, problems)
    if lifetime is Lifetime.TTL and body.get("ttl") is None:
        # The TTL is the key's whole life here (and a rotation's overlap): it must be chosen.
        problems.append(
            SpecProblem(
                name,
                "ttl",
                "missing: lifetime `ttl` keeps the key until its TTL runs out, so it must be set",
                "add `ttl: 24h`, say (longer than the schedule's interval, so keys overlap)",
            )
        )
    connection = _connection(name, body.get("connection"), provider, rules, problems)
    params = {k: v for k, v in body.items() if k not in COMMON_FIELDS}
    if provider is not None:
        try:
            provider(None).check_params(params)
            if connection is not None and rules.connections is not None:
                provider(None).check_allowed(params, rules.connections[connection])
        except ParamError as exc:
            problems.append(SpecProblem(name, exc.field, exc.cause, exc.fix))
    if len(problems) > before or provider_name is None or ttl is None or lifetime is None:
        return None
    return KeySpec(
        name=name,
        provider=str(provider_name),
        ttl=ttl,
        lifetime=lifetime,
        connection=connection,
        params=params,
    )


def _ttl(
    name: str,
    raw: Any,
    rules: SpecRules,
    provider_cap: timedelta | None,
    problems: list[SpecProblem],
) -> timedelta | None:
    if raw is None:
        ttl = rules.default_ttl
    else:
        try:
            ttl = parse_duration(str(raw))
        except ValueError as exc:
            problems.append(SpecProblem(name, "ttl", str(exc)))
            return None
    cap = min(rules.max_ttl, provider_cap) if provider_cap else rules.max_ttl
    if ttl > cap:
        problems.append(
            SpecProblem(
                name,
                "ttl",
                f"{format_duration(ttl)} is longer than the limit of {format_duration(cap)}",
                f"use at most {format_duration(cap)}, or raise the action's `max-ttl` input",
            )
        )
        return None
    return ttl


def _lifetime(
    name: str, raw: Any, rules: SpecRules, problems: list[SpecProblem]
) -> Lifetime | None:
    try:
        lifetime = Lifetime(str(raw))
    except ValueError:
        choices = ", ".join(lt.value for lt in Lifetime)
        problems.append(
            SpecProblem(name, "lifetime", f"unknown lifetime {raw!r}", f"use one of: {choices}")
        )
        return None
    if lifetime is Lifetime.PR and rules.pull_request is False:
        problems.append(
            SpecProblem(
                name,
                "lifetime",
                "`pr` needs a run triggered by a pull request",
                "use `run`, or run this step only on `pull_request` events",
            )
        )
        return None
    return lifetime


def _connection(
    name: str,
    raw: Any,
    provider: type[Any] | None,
    rules: SpecRules,
    problems: list[SpecProblem],
) -> str | None:
    needs = bool(provider and provider.needs_connection)
    if raw is None:
        if needs:
            problems.append(
                SpecProblem(
                    name,
                    "connection",
                    "this provider needs a connection",
                    "add `connection: <name>` and set RUNKEYS_CONNECTION_<NAME> in the step's env",
                )
            )
        return None
    if not isinstance(raw, str) or not raw.strip():
        problems.append(SpecProblem(name, "connection", "must be a connection name"))
        return None
    if not needs and provider is not None:
        problems.append(
            SpecProblem(name, "connection", "this provider takes no connection", "remove it")
        )
        return None
    connection = normalize_name(raw)
    if rules.connections is not None and connection not in rules.connections:
        problems.append(
            SpecProblem(
                name,
                "connection",
                f"{env_var(raw)} is not set",
                f"add `{env_var(raw)}: ${{{{ secrets.{env_var(raw)} }}}}` to the step's env",
            )
        )
        return None
    return connection
