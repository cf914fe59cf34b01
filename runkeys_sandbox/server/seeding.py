"""Seeding the sandbox: repositories, GitHub Apps, installations, and tokens of every kind, as a
test (or `runkeys sandbox`) sets them up. Part of `Sandbox`."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runkeys_sandbox.routes.apps import mint_installation_token
from runkeys_sandbox.server.auth import WORKFLOW_TOKEN_PERMISSIONS, pat_value
from runkeys_sandbox.server.errors import ApiError
from runkeys_sandbox.server.runs import RunBook
from runkeys_sandbox.server.state import (
    App,
    Clock,
    Installation,
    Repository,
    SecretScanningAlert,
    Token,
    World,
)

DEFAULT_INSTALLATION_PERMISSIONS = {
    "secrets": "write",
    "environments": "write",
    "administration": "write",
    "actions": "read",
    "metadata": "read",
}
WORKFLOW_TOKEN_LIFETIME = 24 * 3600  # a job's GITHUB_TOKEN lives at most a day

RepoRef = Repository | str


class Seeding(RunBook):
    """Repositories, Apps, installations and tokens (workflow runs come from `RunBook`)."""

    world: World
    clock: Clock

    def add_repository(
        self,
        full_name: str,
        id: int | None = None,
        *,
        owner_type: str = "Organization",
        default_branch: str = "main",
    ) -> Repository:
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"{full_name!r} is not owner/name")
        with self.world.lock:
            if self.world.repository(owner, name) is not None:
                raise ValueError(f"{full_name} exists already")
            if id is not None and self.world.repository_by_id(id) is not None:
                raise ValueError(f"a repository with id {id} exists already")
            repo = Repository(
                id=id if id is not None else self.world.next_id("repository"),
                account=self.world.account(owner, kind=owner_type),
                name=name,
                created_at=self.clock(),
                default_branch=default_branch,
            )
            self.world.repositories[full_name.lower()] = repo
            return repo

    def repository(self, full_name: str) -> Repository:
        owner, _, name = full_name.partition("/")
        with self.world.lock:
            repo = self.world.repository(owner, name)
        if repo is None:
            raise KeyError(f"no repository {full_name} in the sandbox")
        return repo

    def _repo(self, repo: RepoRef) -> Repository:
        return self.repository(repo) if isinstance(repo, str) else repo

    def raise_secret_alert(
        self,
        repo: RepoRef,
        secret: str,
        *,
        secret_type: str = "runkeys_token",  # noqa: S107 (a kind of secret, not one)
        display_name: str = "runkeys token",
        publicly_leaked: bool = False,
    ) -> SecretScanningAlert:
        """Secret scanning found `secret` in `repo`: a new alert, numbered after the last one,
        or the open alert that already holds this secret (GitHub raises one per secret)."""
        target = self._repo(repo)
        with self.world.lock:
            for alert in target.secret_alerts.values():
                if alert.secret == secret and alert.state == "open":
                    return alert
            now = self.clock()
            alert = SecretScanningAlert(
                number=max(target.secret_alerts, default=0) + 1,
                secret=secret,
                secret_type=secret_type,
                secret_type_display_name=display_name,
                created_at=now,
                updated_at=now,
                publicly_leaked=publicly_leaked,
            )
            target.secret_alerts[alert.number] = alert
            return alert

    def add_app(
        self,
        app_id: int | None = None,
        webhook_secret: str | None = None,
        *,
        slug: str | None = None,
        owner: str = "runkeys-sandbox",
        private_key_pem: str | None = None,
    ) -> App:
        """A GitHub App with its own RSA key (or the PEM given) and webhook secret."""
        if private_key_pem is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            loaded = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError("a GitHub App's private key is an RSA key")
            key = loaded
        with self.world.lock:
            ident = app_id if app_id is not None else self.world.next_id("app")
            if ident in self.world.apps:
                raise ValueError(f"an App with id {ident} exists already")
            app = App(
                id=ident,
                slug=slug or f"runkeys-sandbox-{ident}",
                name=f"runkeys sandbox {ident}",
                owner=self.world.account(owner),
                webhook_secret=webhook_secret or secrets.token_hex(32),
                created_at=self.clock(),
                private_key=key,
            )
            self.world.apps[ident] = app
            return app

    def install(
        self,
        app: App,
        repositories: Iterable[RepoRef] = (),
        permissions: Mapping[str, str] | None = None,
        *,
        account: str | None = None,
        all_repositories: bool = False,
        events: Sequence[str] = ("pull_request", "workflow_run"),
    ) -> Installation:
        """Install `app` on an account: the given repositories, or all of the account's."""
        repos = [self._repo(r) for r in repositories]
        logins = {r.owner.lower() for r in repos} | ({account.lower()} if account else set())
        if len(logins) != 1:
            raise ValueError("an installation covers repositories of exactly one account")
        with self.world.lock:
            target = self.world.account(account or repos[0].owner)
            if any(i.app is app and i.account is target for i in self.world.installations.values()):
                raise ValueError(
                    f"the App is installed on {target.login} already (update_installation)"
                )
            installation = Installation(
                id=self.world.next_id("installation"),
                app=app,
                account=target,
                repository_ids=None if all_repositories else {r.id for r in repos},
                permissions=dict(permissions or DEFAULT_INSTALLATION_PERMISSIONS),
                created_at=self.clock(),
                events=list(events),
            )
            self.world.installations[installation.id] = installation
            return installation

    def update_installation(
        self,
        installation: Installation,
        *,
        repositories: Iterable[RepoRef] | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> None:
        """Change which repositories (and permissions) an installation covers; existing tokens
        lose the repositories taken away, as on GitHub."""
        with self.world.lock:
            if repositories is not None:
                repos = [self._repo(r) for r in repositories]
                if any(r.account is not installation.account for r in repos):
                    raise ValueError("an installation covers repositories of its own account only")
                installation.repository_ids = {r.id for r in repos}
            if permissions is not None:
                installation.permissions = dict(permissions)

    def uninstall(self, installation: Installation) -> None:
        """The App's installation is removed: its tokens stop working."""
        with self.world.lock:
            self.world.installations.pop(installation.id, None)
            for token in self.world.tokens.values():
                if token.installation is installation:
                    token.revoked = True

    def suspend(self, installation: Installation, suspended: bool = True) -> None:
        with self.world.lock:
            installation.suspended_at = self.clock() if suspended else None

    # Repeated on purpose: alike in layout (keyword parameters, the world's lock), not logic.
    def create_installation_token(
        self,
        installation: Installation,
        repositories: Iterable[RepoRef] | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> str:
        """What `POST /app/installations/{id}/access_tokens` returns, without the HTTP."""
        with self.world.lock:
            repos = None if repositories is None else [self._repo(r) for r in repositories]
            reachable = self.world.installation_repositories(installation)
            if repos is not None and any(r not in reachable for r in repos):
                raise ValueError("a repository is not part of the installation")
            try:
                token = mint_installation_token(
                    self.world, installation, repos, dict(permissions) if permissions else None
                )
            except ApiError as exc:
                raise ValueError(exc.message) from None
            return token.value

    def add_token(
        self,
        repositories: Iterable[RepoRef] | None = None,
        permissions: Mapping[str, str] | None = None,
        *,
        expires_in: float | None = None,
    ) -> str:
        """A fine-grained-PAT-like token: `repositories` (None: all) and `permissions`."""
        with self.world.lock:
            ids = (
                None if repositories is None else frozenset(self._repo(r).id for r in repositories)
            )
            now = self.clock()
            token = Token(
                value=pat_value(),
                kind="pat",
                permissions={"metadata": "read", **dict(permissions or {})},
                repository_ids=ids,
                created_at=now,
                expires_at=now + expires_in if expires_in is not None else None,
            )
            self.world.tokens[token.value] = token
            return token.value

    def workflow_token(self, repo: RepoRef, permissions: Mapping[str, str] | None = None) -> str:
        """A job's GITHUB_TOKEN for `repo`: no secrets, administration or environments."""
        with self.world.lock:
            now = self.clock()
            token = Token(
                value="ghs_" + secrets.token_urlsafe(27).replace("-", "a").replace("_", "b")[:36],
                kind="workflow",
                permissions=dict(permissions or WORKFLOW_TOKEN_PERMISSIONS),
                repository_ids=frozenset({self._repo(repo).id}),
                created_at=now,
                expires_at=now + WORKFLOW_TOKEN_LIFETIME,
            )
            self.world.tokens[token.value] = token
            return token.value

    def revoke_token(self, value: str) -> None:
        with self.world.lock:
            if value in self.world.tokens:
                self.world.tokens[value].revoked = True

    def token_is_live(self, value: str) -> bool:
        with self.world.lock:
            token = self.world.tokens.get(value)
            if token is None or token.revoked:
                return False
            return token.expires_at is None or self.clock() < token.expires_at
