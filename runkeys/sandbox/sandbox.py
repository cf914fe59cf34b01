"""`Sandbox`: the GitHub stand-in as tests, the demo and `runkeys sandbox` drive it.

with Sandbox() as sb:
    repo = sb.add_repository("octo/app")
    app = sb.add_app()
    installation = sb.install(app, [repo])
    gh = Github(base_url=sb.url, auth=Auth.AppAuth(app.id, app.private_key_pem)
                .get_installation_auth(installation.id))
    gh.get_repo("octo/app").create_secret("TOKEN", "value")
    assert sb.secret_value(repo, "TOKEN") == "value"
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from runkeys.sandbox import webhooks
from runkeys.sandbox.app import SandboxApp
from runkeys.sandbox.auth import WORKFLOW_TOKEN_PERMISSIONS, pat_value
from runkeys.sandbox.errors import ApiError
from runkeys.sandbox.faults import Faults
from runkeys.sandbox.oidc import OIDCIssuer, RunClaims
from runkeys.sandbox.recording import RecordedRequest, RequestLog
from runkeys.sandbox.representations import deploy_key_json
from runkeys.sandbox.routes_apps import mint_installation_token
from runkeys.sandbox.routes_oidc import API_VERSION, ISSUER_PATH, RUNNER_PATH
from runkeys.sandbox.runs import RunBook
from runkeys.sandbox.server import BackgroundServer
from runkeys.sandbox.state import (
    App,
    Clock,
    Installation,
    Repository,
    SecretScope,
    Token,
    WorkflowRun,
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


class Sandbox(RunBook):
    """A GitHub API stand-in on a free loopback port. Not started until `start()` (or `with`)."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, clock: Callable[[], float] | None = None
    ) -> None:
        self.clock = Clock(clock or time.time)
        self.world = World(self.clock)
        self._faults = Faults()
        self._log = RequestLog()
        self._host, self._port = host, port
        self._server: BackgroundServer | None = None
        self._url: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Sandbox:
        if self._server is not None:
            raise RuntimeError("this sandbox was started already")
        app = SandboxApp(self.world, self._faults, self._log, lambda: self.url)
        self._server = BackgroundServer(app, self._host, self._port)
        self._url = f"http://{self._server.host}:{self._server.port}"
        with self.world.lock:
            self.world.oidc = OIDCIssuer(self.oidc_issuer_url)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> Sandbox:
        return self if self._server is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API base URL (`GITHUB_API_URL`; PyGithub's `base_url`)."""
        if self._url is None:
            raise RuntimeError("the sandbox is not started: call start() first")
        return self._url

    @property
    def oidc_issuer_url(self) -> str:
        return f"{self.url}{ISSUER_PATH}"

    @property
    def oidc(self) -> OIDCIssuer:
        if self.world.oidc is None:
            raise RuntimeError("the sandbox is not started: call start() first")
        return self.world.oidc

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox's time forward: tokens and JWTs expire without waiting."""
        self.clock.offset += seconds

    # -- repositories, Apps, installations, tokens ---------------------------------------------

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

    def add_app(
        self,
        app_id: int | None = None,
        webhook_secret: str | None = None,
        *,
        slug: str | None = None,
        owner: str = "runkeys-sandbox",
    ) -> App:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
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
            installation = Installation(
                id=self.world.next_id("installation"),
                app=app,
                account=self.world.account(account or repos[0].owner),
                repository_ids=None if all_repositories else {r.id for r in repos},
                permissions=dict(permissions or DEFAULT_INSTALLATION_PERMISSIONS),
                created_at=self.clock(),
                events=list(events),
            )
            self.world.installations[installation.id] = installation
            return installation

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

    @property
    def rate_limits(self) -> dict[str, int]:
        """Requests per hour by caller kind; change an entry to exercise the primary limit."""
        return self.world.rates.limits

    # -- secrets, environments, deploy keys ---------------------------------------------------

    def _scope(self, repo: RepoRef, environment: str | None) -> SecretScope:
        repository = self._repo(repo)
        if environment is None:
            return repository.secrets
        env = repository.environments.get(environment.lower())
        if env is None:
            raise KeyError(f"no environment {environment!r} in {repository.full_name}")
        return env.secrets

    def secret_value(self, repo: RepoRef, name: str, environment: str | None = None) -> str | None:
        """The decrypted value stored under `name`, or None."""
        with self.world.lock:
            secret = self._scope(repo, environment).secrets.get(name.upper())
            return secret.value.decode("utf-8", "replace") if secret else None

    def secret_names(self, repo: RepoRef, environment: str | None = None) -> list[str]:
        with self.world.lock:
            return [s.name for s in self._scope(repo, environment).sorted_secrets()]

    def org_secret_value(self, org: str, name: str) -> str | None:
        with self.world.lock:
            secret = self.world.account(org).secrets.secrets.get(name.upper())
            return secret.value.decode("utf-8", "replace") if secret else None

    def public_key(self, repo: RepoRef, environment: str | None = None) -> tuple[str, str]:
        """(`key_id`, base64 key) of a scope, as its public-key endpoint answers."""
        with self.world.lock:
            key = self._scope(repo, environment).key
            return key.key_id, key.public_key_b64

    def rotate_public_key(self, repo: RepoRef, environment: str | None = None) -> str:
        """A new key pair for the scope; values sealed to the old one are refused. The new
        `key_id`."""
        with self.world.lock:
            return self._scope(repo, environment).rotate()

    def environment_names(self, repo: RepoRef) -> list[str]:
        with self.world.lock:
            return sorted((e.name for e in self._repo(repo).environments.values()), key=str.lower)

    def deploy_keys(self, repo: RepoRef) -> list[dict[str, Any]]:
        with self.world.lock:
            repository = self._repo(repo)
            keys = sorted(repository.deploy_keys.values(), key=lambda k: k.id)
            return [deploy_key_json(repository, k, self.url) for k in keys]

    def set_oidc_subject_claims(
        self, repo: RepoRef, include_claim_keys: Sequence[str] | None
    ) -> None:
        with self.world.lock:
            self._repo(repo).oidc_claim_keys = (
                None if include_claim_keys is None else list(include_claim_keys)
            )

    # -- OIDC --------------------------------------------------------------------------------

    def runner_oidc_env(self, claims: RunClaims) -> dict[str, str]:
        """`ACTIONS_ID_TOKEN_REQUEST_URL`/`_TOKEN` as the runner hands them to a job of `claims`."""
        plan, job = str(uuid.uuid4()), str(uuid.uuid4())
        request_token = secrets.token_urlsafe(32)
        with self.world.lock:
            self.world.oidc_requests[request_token] = (f"{plan}/{job}", claims)
        path = RUNNER_PATH.format(plan=plan, job=job)
        return {
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.url}{path}?api-version={API_VERSION}",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": request_token,
        }

    def oidc_token(self, claims: RunClaims, audience: str, **overrides: Any) -> str:
        return self.oidc.token_for(claims, audience, now=int(self.clock()), **overrides)

    # -- webhooks, faults, the request log -----------------------------------------------------

    def deliver(
        self,
        url: str,
        event: str,
        payload: Any,
        *,
        secret: str | None = None,
        delivery_id: str | None = None,
        app: App | None = None,
    ) -> requests.Response:
        """Deliver as the App does (its webhook secret and id unless `secret`/`app` say else)."""
        if app is None:
            with self.world.lock:
                apps = list(self.world.apps.values())
            if len(apps) != 1:
                raise ValueError("name the App whose delivery this is (app=…)")
            app = apps[0]
        return webhooks.deliver(
            url,
            event,
            payload,
            secret=secret if secret is not None else app.webhook_secret,
            delivery_id=delivery_id,
            app_id=app.id,
        )

    def inject_fault(
        self,
        method: str,
        path_regex: str,
        *,
        status: int | None = 500,
        retry_after: int | None = None,
        delay: float = 0.0,
        times: int | None = 1,
        body: Any = None,
    ) -> None:
        """Answer matching requests with `status` (None: only `delay`), `times` times (None:
        always). 403 and 429 carry GitHub's secondary-rate-limit message."""
        self._faults.add(
            method,
            path_regex,
            status=status,
            retry_after=retry_after,
            delay=delay,
            times=times,
            body=body,
        )

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._log.entries()

    def clear_requests(self) -> None:
        self._log.clear()


__all__ = ["RunClaims", "Sandbox", "WorkflowRun"]
