"""Providers by name. Each lives in a module of its own and passes `tests/providers/`'s
conformance suite."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping

from runkeys.errors import ParamError
from runkeys.providers.base import (
    Minted,
    MintRequest,
    Provider,
    ProviderDeps,
    RevokeRequest,
)

# Provider modules by name, imported on first use: the database drivers alone (psycopg, redis,
# PyMySQL) take most of a second to import, and a step minting `random` keys needs none of them.
_MODULES: dict[str, tuple[str, str]] = {
    "random": ("runkeys.providers.random_value", "RandomProvider"),
    "postgres": ("runkeys.providers.postgres", "PostgresProvider"),
    "mysql": ("runkeys.providers.mysql", "MysqlProvider"),
    "redis": ("runkeys.providers.redis_acl", "RedisAclProvider"),
    "http": ("runkeys.providers.http_issuer", "HttpIssuerProvider"),
    "deploy-key": ("runkeys.providers.deploy_key", "DeployKeyProvider"),
    "github-token": ("runkeys.providers.github_token", "GitHubTokenProvider"),
}


class _Providers(MutableMapping[str, type[Provider]]):
    """Name → provider class, each module imported when its class is first asked for."""

    def __init__(self) -> None:
        self._loaded: dict[str, type[Provider]] = {}
        self._names = list(_MODULES)

    def __getitem__(self, name: str) -> type[Provider]:
        if name not in self._loaded:
            if name not in _MODULES:
                raise KeyError(name)
            module, attribute = _MODULES[name]
            self._loaded[name] = getattr(importlib.import_module(module), attribute)
        return self._loaded[name]

    def __setitem__(self, name: str, provider: type[Provider]) -> None:
        self._loaded[name] = provider
        if name not in self._names:
            self._names.append(name)

    def __delitem__(self, name: str) -> None:
        if name not in self._names:
            raise KeyError(name)
        self._loaded.pop(name, None)
        if name not in _MODULES:
            self._names.remove(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names


PROVIDERS: MutableMapping[str, type[Provider]] = _Providers()


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
