"""What the step leaves behind besides the keys: the post step's state, the `keys-json` output
and the step summary. None of them holds a value (tests scan them for the values they know)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from runkeys.broker import SealedKey
from runkeys.errors import ConfigError
from runkeys.filescan import MANIFEST_VERSION, Manifest, watch
from runkeys.issuance import Issued, IssuedKey
from runkeys.leases import LeaseRequest

STATE_NAME = "leases"  # the post step reads it as STATE_leases
STATE_VERSION = 1


@dataclass(frozen=True)
class PostState:
    """What the post step must retire: lease records (never values), and the environment this
    step created, if any."""

    leases: tuple[LeaseRequest, ...]
    created_environment: str | None = None

    def to_text(self) -> str:
        return json.dumps(
            {
                "version": STATE_VERSION,
                "created_environment": self.created_environment,
                "leases": msgspec.to_builtins(self.leases),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_text(cls, text: str) -> PostState:
        try:
            data: Any = json.loads(text)
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"state version {data.get('version')!r}")
            leases = tuple(msgspec.convert(data["leases"], type=list[LeaseRequest]))
            created = data.get("created_environment")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"STATE_{STATE_NAME}",
                f"the main step's state cannot be read ({exc})",
                fix="use the same version of runkeys for the main and the post step",
            ) from None
        return cls(leases=leases, created_environment=None if created is None else str(created))


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _scope(key: IssuedKey) -> tuple[str, str | None]:
    secret = key.lease.secret
    if secret is None:
        return "job", None
    if secret.environment is None:
        return "repository", None
    return "environment", secret.environment


def keys_json(keys: Sequence[IssuedKey]) -> str:
    """The `keys-json` output: every key's name, provider, scope, lifetime and expiry."""
    items = []
    for key in keys:
        scope, environment = _scope(key)
        items.append(
            {
                "name": key.lease.key_name,
                "provider": key.lease.provider,
                "scope": scope,
                "environment": environment,
                "lifetime": key.lease.lifetime.value,
                "expires_at": _when(key.lease.expires_at),
                "lease_id": key.lease.id,
                "variables": list(key.variables),
            }
        )
    return json.dumps(items, separators=(",", ":"))


def broker_keys_json(keys: Sequence[SealedKey], variables: Mapping[str, list[str]]) -> str:
    """`keys-json` in broker mode: the same fields as `keys_json`, from the service's answer."""
    items = [
        {
            "name": key.name,
            "provider": key.provider,
            "scope": key.scope,
            "environment": key.environment,
            "lifetime": key.lifetime.value,
            "expires_at": _when(key.expires_at),
            "lease_id": key.lease_id,
            "variables": variables[key.name],
        }
        for key in keys
    ]
    return json.dumps(items, separators=(",", ":"))


def scan_manifest(names: Mapping[str, Sequence[str]], variables: Mapping[str, str]) -> str:
    """What the scan sub-action looks for: each key's variables (the value's and its secret
    parts') and their fingerprints, from key name → its variables and variable → value."""
    watched = [w for key, listed in names.items() for w in watch(key, listed, variables)]
    return Manifest(MANIFEST_VERSION, tuple(watched)).to_text()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def summary(issued: Issued, *, service_url: str | None) -> str:
    """The step summary: a table of name, provider, scope, lifetime and expiry."""
    lines = [
        f"## runkeys: {len(issued.keys)} key(s) issued",
        "",
        "| Key | Provider | Scope | Lifetime | Expires (UTC) |",
        "|---|---|---|---|---|",
    ]
    for key in issued.keys:
        scope, environment = _scope(key)
        where = {"job": "this job only", "repository": "repository secret"}.get(
            scope, f"environment `{environment}`"
        )
        lease = key.lease
        cells = [f"`{lease.key_name}`", lease.provider, where, lease.lifetime.value]
        cells.append(_when(lease.expires_at))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    if issued.created_environment:
        lines.append(f"runkeys created the environment `{_cell(issued.created_environment)}`.")
    if service_url:
        lines.append(f"Leases are registered with the runkeys service at {_cell(service_url)}.")
    else:
        lines.append(
            "No `service-url`: keys with lifetime `run`, `pr` or `ttl` are bounded only by their "
            "TTL (and `ttl` keys only by the provider's own expiry, if it has one); `job` keys "
            "are retired by this step's post step."
        )
    return "\n".join(lines) + "\n"


def broker_summary(
    keys: Sequence[SealedKey], created_environment: str | None, service_url: str
) -> str:
    """The step summary in broker mode: the same table as `summary`."""
    lines = [
        f"## runkeys: {len(keys)} key(s) issued by the runkeys service",
        "",
        "| Key | Provider | Scope | Lifetime | Expires (UTC) |",
        "|---|---|---|---|---|",
    ]
    for key in keys:
        where = {"job": "this job only", "repository": "repository secret"}.get(
            key.scope, f"environment `{key.environment}`"
        )
        cells = [f"`{key.name}`", key.provider, where, key.lifetime.value, _when(key.expires_at)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    if created_environment:
        lines.append(f"The runkeys service created the environment `{_cell(created_environment)}`.")
    lines.append(
        f"Minted, written and leased by the runkeys service at {_cell(service_url)}; this job "
        "held no App key and no connection."
    )
    return "\n".join(lines) + "\n"
