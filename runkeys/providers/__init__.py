"""Providers by name. Each lives in a module of its own and passes `tests/providers/`'s
conformance suite."""

from __future__ import annotations

from runkeys.errors import ParamError
from runkeys.providers.base import (
    Minted,
    MintRequest,
    Provider,
    ProviderDeps,
    RevokeRequest,
)
from runkeys.providers.deploy_key import DeployKeyProvider
from runkeys.providers.github_token import GitHubTokenProvider
from runkeys.providers.http_issuer import HttpIssuerProvider
from runkeys.providers.mysql import MysqlProvider
from runkeys.providers.postgres import PostgresProvider
from runkeys.providers.random_value import RandomProvider
from runkeys.providers.redis_acl import RedisAclProvider

PROVIDERS: dict[str, type[Provider]] = {
    provider.name: provider
    for provider in (
        RandomProvider,
        PostgresProvider,
        MysqlProvider,
        RedisAclProvider,
        HttpIssuerProvider,
        DeployKeyProvider,
        GitHubTokenProvider,
    )
}


def provider_class(name: str) -> type[Provider]:
    """The provider registered under `name`; an error that lists the known ones otherwise."""
    try:
        return PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ParamError(
            "provider", f"unknown provider {name!r}", fix=f"use one of: {known}"
        ) from None


class Registry:
    """Provider instances sharing one set of dependencies, made on first use."""

    def __init__(self, deps: ProviderDeps | None = None) -> None:
        self.deps = deps or ProviderDeps()
        self._instances: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        if name not in self._instances:
            self._instances[name] = provider_class(name)(self.deps)
        return self._instances[name]


__all__ = [
    "PROVIDERS",
    "MintRequest",
    "Minted",
    "Provider",
    "ProviderDeps",
    "Registry",
    "RevokeRequest",
    "provider_class",
]
