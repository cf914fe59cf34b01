"""What the service's parts share — the web app, the worker, the sweeper and the CLI: settings,
the ledger, GitHub, the providers, metrics and the clock. Built once per process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from handler.config import ServiceConfig
from handler.installations import InstallationLookup
from handler.ledger import Ledger
from handler.ledger.seen import first_token_use
from handler.metrics import Metrics
from handler.policy import POLICY_SETTING, PolicyStore
from runkeys.github.pacing import Pacing
from runkeys.github.secrets import SecretStore
from runkeys.github.session import GitHubSession
from runkeys.oidc import KeySet, OIDCVerifier
from runkeys.providers import ProviderDeps, Registry

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Service:
    def __init__(
        self,
        config: ServiceConfig,
        *,
        ledger: Ledger | None = None,
        clock: Clock = utc_now,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.ledger = ledger or Ledger.open(config.database_url)
        self.metrics = metrics or Metrics()
        self._lock = threading.Lock()
        self._github: GitHubSession | None = None
        self._registry: Registry | None = None
        self._verifier: OIDCVerifier | None = None
        # GitHub's limits, per installation: every session of this process spends from it.
        self.pacing = Pacing(config.worker.github_limits(), events=self.metrics.pacing)
        self.installations = InstallationLookup(
            lambda: self.github, clock=clock, miss_ttl=config.not_installed_ttl
        )
        self.wake_worker: Callable[[], None] = lambda: None  # set by the embedded worker
        # Broker mode's policy; None (no RUNKEYS_POLICY_FILE): `/v1/keys` mints nothing.
        self.policy = PolicyStore.from_env({POLICY_SETTING: config.policy_file or ""})
        self._broker_sessions: dict[frozenset[tuple[str, str]], GitHubSession] = {}

    @property
    def github(self) -> GitHubSession:
        with self._lock:
            if self._github is None:
                if self.config.github is None:
                    raise RuntimeError("this command was configured without GitHub")
                self._github = GitHubSession(self.config.github, now=self.clock, pacing=self.pacing)
            return self._github

    @property
    def registry(self) -> Registry:
        """Providers, with GitHub for those that act on it (deploy keys, tokens)."""
        github = self.github if self.config.github is not None else None
        with self._lock:
            if self._registry is None:
                self._registry = Registry(ProviderDeps(github=github, now=self.clock))
            return self._registry

    @property
    def verifier(self) -> OIDCVerifier:
        with self._lock:
            if self._verifier is None:
                self._verifier = OIDCVerifier(
                    self.config.oidc_issuer,
                    self.config.oidc_audience,
                    keys=KeySet(self.config.oidc_issuer),
                    first_use=self._first_token_use,
                )
            return self._verifier

    def broker_github(self, permissions: Mapping[str, str]) -> GitHubSession:
        """The App for broker mode's writes: installation tokens narrowed to the one
        repository (`GitHubSession.github_for`) and to `permissions`."""
        key = frozenset(permissions.items())
        with self._lock:
            if key not in self._broker_sessions:
                if self.config.github is None:
                    raise RuntimeError("this command was configured without GitHub")
                self._broker_sessions[key] = GitHubSession(
                    self.config.github,
                    permissions=dict(permissions),
                    now=self.clock,
                    pacing=self.pacing,
                )
            return self._broker_sessions[key]

    def _first_token_use(self, jti: str, expires_at: datetime) -> bool:
        with self.ledger.begin() as conn:
            return first_token_use(conn, jti, expires_at)

    def secrets_for(self, repository: str) -> SecretStore:
        return SecretStore(self.github, repository)

    def close(self) -> None:
        self.ledger.close()
