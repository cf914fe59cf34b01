"""What the GitHub stand-in knows: accounts, repositories with their secrets, environments, deploy
keys and workflow runs, GitHub Apps, installations and tokens. Plain objects behind one lock
(`World.lock`); the HTTP handlers and the `Sandbox` methods take it around every change."""

from __future__ import annotations

import base64
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runkeys_sandbox.server.oidc import OIDCIssuer, RunClaims
from runkeys_sandbox.server.ratelimit import RateLimits
from runkeys_sandbox.server.sealing import SealingKey

# Repository and environment; organizations have 1,000:
# https://docs.github.com/actions/security-guides/using-secrets-in-github-actions#limits-for-secrets
SECRETS_PER_SCOPE = 100
SECRETS_PER_ORGANIZATION = 1000
SECRET_MAX_BYTES = 48 * 1024


def iso(timestamp: float) -> str:
    """GitHub's timestamps: ISO 8601, UTC, whole seconds, `Z`."""
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def legacy_node_id(type_code: str, kind: str, ident: int) -> str:
    """GitHub's legacy global node ids, e.g. base64("010:Repository3544490")."""
    return base64.b64encode(f"{type_code}:{kind}{ident}".encode()).decode()


@dataclass
class Secret:
    name: str  # as GitHub lists it: upper case
    value: bytes = field(repr=False)
    created_at: float
    updated_at: float
    visibility: str | None = None  # organization secrets only
    selected_repository_ids: list[int] | None = None


@dataclass
class SecretScope:
    """One key pair and the secrets sealed to it: a repository, an environment or an org."""

    cap: int = SECRETS_PER_SCOPE
    key: SealingKey = field(default_factory=SealingKey)
    secrets: dict[str, Secret] = field(default_factory=dict)

    def rotate(self) -> str:
        self.key = SealingKey()
        return self.key.key_id

    def sorted_secrets(self) -> list[Secret]:
        return sorted(self.secrets.values(), key=lambda s: s.name)


@dataclass
class Account:
    login: str
    id: int
    type: str  # "Organization" | "User"
    secrets: SecretScope = field(default_factory=lambda: SecretScope(SECRETS_PER_ORGANIZATION))

    @property
    def node_id(self) -> str:
        return legacy_node_id("012" if self.type == "Organization" else "04", self.type, self.id)


@dataclass
class Environment:
    id: int
    name: str
    created_at: float
    updated_at: float
    wait_timer: int = 0
    prevent_self_review: bool = False
    reviewers: list[dict[str, Any]] = field(default_factory=list)
    deployment_branch_policy: dict[str, bool] | None = None
    # ids of its wait-timer, reviewers and branch-policy protection rules
    rule_ids: tuple[int, int, int] = (0, 0, 0)
    # Custom deployment protection rules (an App's), as `{"id": …, "app_slug": …}`: only
    # admins enable them, through the UI or the REST API; tests add them to the world.
    custom_rules: list[dict[str, Any]] = field(default_factory=list)
    secrets: SecretScope = field(default_factory=SecretScope)


@dataclass
class DeployKey:
    id: int
    title: str
    key: str  # "<type> <base64>", without the comment, as GitHub shows it
    read_only: bool
    created_at: float
    added_by: str | None
    last_used: float | None = None


@dataclass
class RunAttempt:
    number: int
    status: str
    conclusion: str | None
    created_at: float
    updated_at: float


@dataclass
class RunLogs:
    """A run's logs: each job's steps, in order, as (step name, what it printed); every line
    stamped with the time it was set at, as GitHub stamps each line it keeps."""

    jobs: dict[str, list[tuple[str, str]]]
    at: float
    deleted: bool = False


@dataclass
class WorkflowRun:
    id: int
    run_number: int
    event: str
    head_branch: str
    head_sha: str
    pull_requests: list[int]
    workflow_id: int
    attempts: dict[int, RunAttempt]
    name: str = "CI"
    path: str = ".github/workflows/ci.yml"
    actor: str = "octocat"
    # What each attempt's jobs printed (`Sandbox.set_run_logs`), by attempt number: the archives
    # GitHub serves, made on request.
    logs: dict[int, RunLogs] = field(default_factory=dict)

    @property
    def latest(self) -> RunAttempt:
        return self.attempts[max(self.attempts)]


@dataclass
class SecretScanningAlert:
    """A secret scanning alert: what GitHub found (`secret`), where it stands, who resolved it.
    https://docs.github.com/rest/secret-scanning/secret-scanning"""

    number: int
    secret: str = field(repr=False)
    secret_type: str
    secret_type_display_name: str
    created_at: float
    updated_at: float
    state: str = "open"  # open | resolved
    resolution: str | None = None
    resolution_comment: str | None = None
    resolved_at: float | None = None
    resolved_by: Account | None = None
    publicly_leaked: bool = False


@dataclass
class Repository:
    id: int
    account: Account
    name: str
    created_at: float
    default_branch: str = "main"
    secrets: SecretScope = field(default_factory=SecretScope)
    environments: dict[str, Environment] = field(default_factory=dict)  # by lower-case name
    deploy_keys: dict[int, DeployKey] = field(default_factory=dict)
    runs: dict[int, WorkflowRun] = field(default_factory=dict)
    oidc_claim_keys: list[str] | None = None  # the OIDC `sub` customization; None: the default
    secret_alerts: dict[int, SecretScanningAlert] = field(default_factory=dict)  # by number

    @property
    def owner(self) -> str:
        return self.account.login

    @property
    def full_name(self) -> str:
        return f"{self.account.login}/{self.name}"

    @property
    def node_id(self) -> str:
        return legacy_node_id("010", "Repository", self.id)


@dataclass
class App:
    id: int
    slug: str
    name: str
    owner: Account
    webhook_secret: str = field(repr=False)
    created_at: float
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @property
    def private_key_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # "BEGIN RSA PRIVATE KEY", as GitHub
            serialization.NoEncryption(),
        ).decode()

    # What GitHub shows of an App made from a manifest; seeded Apps keep the defaults.
    permissions: dict[str, str] = field(default_factory=lambda: {"metadata": "read"})
    events: list[str] = field(default_factory=lambda: ["pull_request", "workflow_run"])
    client_secret: str = field(default="", repr=False)

    @property
    def client_id(self) -> str:
        return f"Iv23li{self.id:014x}"


@dataclass
class Installation:
    id: int
    app: App
    account: Account
    repository_ids: set[int] | None  # None: all of the account's repositories
    permissions: dict[str, str]
    created_at: float
    events: list[str] = field(default_factory=lambda: ["pull_request", "workflow_run"])
    suspended_at: float | None = None


@dataclass
class Token:
    """A credential for the REST API that is not a JWT."""

    value: str = field(repr=False)
    kind: str  # "installation" | "workflow" | "pat"
    permissions: dict[str, str]
    repository_ids: frozenset[int] | None  # None: every repository the grantor can reach
    created_at: float
    expires_at: float | None
    installation: Installation | None = None
    revoked: bool = False


class Clock:
    """Wall time plus an offset tests can move forward (expiry without waiting)."""

    def __init__(self, source: Callable[[], float] = time.time) -> None:
        self._source = source
        self.offset = 0.0

    def __call__(self) -> float:
        return self._source() + self.offset


class World:
    """Every object of one sandbox and the lock that guards them."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.lock = threading.RLock()
        self.now = clock or Clock()
        self.oidc_issuer_url: str | None = None  # set when the server starts
        self._oidc: OIDCIssuer | None = None
        # runner request token → ("plan/job" it was handed to, the run it speaks for)
        self.oidc_requests: dict[str, tuple[str, RunClaims]] = {}
        self.rates = RateLimits()
        self.accounts: dict[str, Account] = {}
        self.repositories: dict[str, Repository] = {}  # by lower-case full name
        self.apps: dict[int, App] = {}
        self.installations: dict[int, Installation] = {}
        self.tokens: dict[str, Token] = {}
        # App-manifest code → (manifest, owner login, when made): what GitHub's redirect carries.
        self.manifest_codes: dict[str, tuple[dict[str, Any], str, float]] = {}
        # Log download token → (repository id, run id, expiry): GitHub's signed, short-lived URL.
        self.log_downloads: dict[str, tuple[int, int, int, float]] = {}
        # Realistic magnitudes (run ids are large); sequential, so runs are reproducible.
        self._ids: dict[str, Iterator[int]] = {
            name: itertools.count(start, step)
            for name, start, step in (
                ("account", 150_000_001, 7),
                ("repository", 800_000_003, 11),
                ("app", 1_000_003, 3),
                ("installation", 60_000_009, 13),
                ("environment", 5_100_000_017, 19),
                ("deploy_key", 120_000_023, 17),
                ("run", 16_000_000_029, 101),
                ("workflow", 95_000_031, 5),
                ("rule", 30_000_037, 2),
            )
        }

    def oidc(self) -> OIDCIssuer:
        """The OIDC issuer, made on first use (its RSA key takes a moment to generate)."""
        with self.lock:
            if self._oidc is None:
                if self.oidc_issuer_url is None:
                    raise RuntimeError("the sandbox is not started: call start() first")
                self._oidc = OIDCIssuer(self.oidc_issuer_url)
            return self._oidc

    def next_id(self, kind: str) -> int:
        return next(self._ids[kind])

    # -- lookups (callers hold the lock) ------------------------------------------------------

    def account(self, login: str, *, kind: str = "Organization") -> Account:
        """The account named `login`, created on first use."""
        key = login.lower()
        if key not in self.accounts:
            self.accounts[key] = Account(login, self.next_id("account"), kind)
        return self.accounts[key]

    def repository(self, owner: str, name: str) -> Repository | None:
        return self.repositories.get(f"{owner}/{name}".lower())

    def repository_by_id(self, ident: int) -> Repository | None:
        return next((r for r in self.repositories.values() if r.id == ident), None)

    def installation_repositories(self, installation: Installation) -> list[Repository]:
        return [
            repo
            for repo in self.repositories.values()
            if repo.account is installation.account
            and (installation.repository_ids is None or repo.id in installation.repository_ids)
        ]

    def token_repository_ids(self, token: Token) -> set[int]:
        """The repositories a token reaches now (an installation can gain or lose some)."""
        if token.installation is not None:
            reachable = {r.id for r in self.installation_repositories(token.installation)}
        else:
            reachable = {r.id for r in self.repositories.values()}
        if token.repository_ids is None:
            return reachable
        return reachable & set(token.repository_ids)

    def installation_for(self, app: App, repo: Repository) -> Installation | None:
        for installation in self.installations.values():
            if installation.app is app and repo in self.installation_repositories(installation):
                return installation
        return None
