"""GitHub access for one process, through PyGithub: as a GitHub App (JWT → installation token
narrowed to the repository and permissions at hand) or with a token given as it is.

PyGithub cannot narrow a token to repositories, so that request goes through its requester
(https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import jwt
from github import Auth, Github, GithubException, GithubIntegration, GithubRetry
from github.Repository import Repository
from jwt.algorithms import RSAAlgorithm
from urllib3.connectionpool import ConnectionPool
from urllib3.response import HTTPResponse
from urllib3.util.retry import Retry

from runkeys import versions
from runkeys.github.errors import explain
from runkeys.github.pacing import InstallationPace, Pacing
from runkeys.github.paths import quote_path, repository_path, split_repository

__all__ = [  # quote_path and split_repository live in runkeys.github.paths, and stay here too
    "DEFAULT_API_URL",
    "TOKEN_REFRESH_MARGIN",
    "AppCredentials",
    "AppJwtSigner",
    "GitHubConfig",
    "GitHubSession",
    "InstallationToken",
    "quote_path",
    "split_repository",
]

DEFAULT_API_URL = "https://api.github.com"
# Mint a new installation token when the cached one has less than this left.
TOKEN_REFRESH_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class AppCredentials:
    app_id: str
    private_key: str = field(repr=False)


@dataclass(frozen=True)
class GitHubConfig:
    api_url: str = DEFAULT_API_URL
    app: AppCredentials | None = None
    token: str | None = field(default=None, repr=False)
    timeout: int = 15
    retries: int = 5
    backoff_factor: float = 0.5  # urllib3: 0.5, 1, 2, 4 … seconds between 5xx retries
    secondary_rate_wait: float = 60.0  # when a secondary limit answer has no Retry-After

    def retry(self, observe: Observer | None = None) -> GithubRetry:
        """PyGithub's retry; `observe` sees each rate-limit refusal it retries (or gives up on)."""
        return ObservedRetry(
            observe=observe,
            secondary_rate_wait=self.secondary_rate_wait,
            total=self.retries,
            backoff_factor=self.backoff_factor,
            backoff_max=30,
            # When retries run out, hand PyGithub the last answer so it raises a
            # GithubException that `explain` can read, not urllib3's bare RetryError.
            raise_on_status=False,
        )


Observer = Callable[[int, Mapping[str, Any]], None]


class ObservedRetry(GithubRetry):
    """`GithubRetry` telling an installation's pace of the 403/429 answers it retries inside
    urllib3, which the caller never sees: their `Retry-After` holds the installation's other
    calls too."""

    def __init__(self, *, observe: Observer | None = None, **kwargs: Any) -> None:
        self.observe = observe
        super().__init__(**kwargs)

    def new(self, **kw: Any) -> Self:
        kw["observe"] = self.observe
        return super().new(**kw)

    def increment(  # type: ignore[override]  # as GithubRetry's own
        self,
        method: str | None = None,
        url: str | None = None,
        response: HTTPResponse | None = None,  # type: ignore[override]
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Retry:
        if self.observe is not None and response is not None and response.status in (403, 429):
            self.observe(response.status, dict(response.headers))
        return super().increment(method, url, response, error, _pool, _stacktrace)


class AppJwtSigner:
    """Signs the App's JWTs (RS256) with its private key parsed once. Given the PEM text,
    PyGithub has PyJWT parse it for every JWT, and cryptography's checks of an RSA key cost
    about 35 ms each time: the action signs two, the service one per installation token."""

    def __init__(self, private_key: str) -> None:
        self._pem = private_key
        self._key: Any = None

    def __call__(self, payload: dict[str, Any]) -> str:
        if self._key is None:  # on first use: a malformed key fails where it always did
            self._key = RSAAlgorithm(RSAAlgorithm.SHA256).prepare_key(self._pem)
        return jwt.encode(payload, self._key, algorithm="RS256")


@dataclass(frozen=True)
class InstallationToken:
    token: str = field(repr=False)
    expires_at: datetime
    installation_id: int
    permissions: Mapping[str, str] = field(default_factory=dict)
    repositories: tuple[str, ...] = ()


class GitHubSession:
    """Clients per repository, made on first use and kept while their token is fresh."""

    def __init__(
        self,
        config: GitHubConfig,
        *,
        permissions: Mapping[str, str] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        pacing: Pacing | None = None,
    ) -> None:
        if config.app is None and config.token is None:
            raise ValueError("GitHubConfig needs an App or a token")
        self.config = config
        self.pacing = pacing
        self.permissions = dict(permissions) if permissions else None
        self._now = now
        self._lock = threading.Lock()
        self._installations: dict[str, int] = {}
        self._clients: dict[str, tuple[Github, datetime | None]] = {}
        self._integration: GithubIntegration | None = None

    # -- clients ---------------------------------------------------------------------------

    def _client_kwargs(self, observe: Observer | None = None) -> dict[str, Any]:
        return {
            "base_url": self.config.api_url.rstrip("/"),
            "timeout": self.config.timeout,
            "retry": self.config.retry(observe),
            # PyGithub's own pacing is off: `WriteBudget` or `pace_for` keeps GitHub's limits
            # (https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api).
            "seconds_between_requests": None,
            "seconds_between_writes": None,
            # Objects are fetched only when an attribute needs it: `get_repo` costs no request.
            "lazy": True,
            "user_agent": versions.USER_AGENT,
        }

    def integration(self) -> GithubIntegration:
        """The App's own client (JWT auth). Only for App sessions."""
        if self.config.app is None:
            raise ValueError("not a GitHub App session")
        with self._lock:
            if self._integration is None:
                sign = AppJwtSigner(self.config.app.private_key)
                auth = Auth.AppAuth(self.config.app.app_id, sign_func=sign)
                self._integration = GithubIntegration(auth=auth, **self._client_kwargs())
            return self._integration

    def github_for(self, repository: str) -> Github:
        """A client allowed to act on `repository`: the given token, or an installation token
        narrowed to this repository and the session's permissions."""
        if self.config.app is None:
            assert self.config.token is not None
            pace = self.pace_for("*")
            return self._cached(
                "*", lambda: (self._token_client(self.config.token or "", pace), None)
            )
        return self._cached(repository.lower(), lambda: self._installation_client(repository))

    def repository(self, full_name: str) -> Repository:
        """A lazy `Repository`: no request until one is needed (saves a `GET /repos/…`). Its
        URL is built from checked segments (`get_repo` puts the name in as it is), and PyGithub
        builds its calls' paths on that URL."""
        path = repository_path(full_name)
        return Repository(self.github_for(full_name).requester, url=path)

    def _cached(self, key: str, make: Callable[[], tuple[Github, datetime | None]]) -> Github:
        with self._lock:
            hit = self._clients.get(key)
            if hit and (hit[1] is None or hit[1] - self._now() > TOKEN_REFRESH_MARGIN):
                return hit[0]
        client, expires = make()
        with self._lock:
            self._clients[key] = (client, expires)
        return client

    def pace_for(self, repository: str) -> InstallationPace | None:
        """The pace of the installation that holds `repository` (None: the session is not
        paced); a token given as it is has one pace of its own."""
        if self.pacing is None:
            return None
        if self.config.app is None:
            return self.pacing.of("token")
        return self.pacing.of(self.installation_id(repository))

    def _token_client(self, token: str, pace: InstallationPace | None = None) -> Github:
        observe = pace.observe if pace is not None else None
        return Github(auth=Auth.Token(token), **self._client_kwargs(observe))

    def _installation_client(self, repository: str) -> tuple[Github, datetime]:
        _, name = split_repository(repository)
        installation = self.installation_id(repository)
        granted = self.create_installation_token(
            installation, repositories=[name], permissions=self.permissions
        )
        pace = self.pacing.of(installation) if self.pacing is not None else None
        return self._token_client(granted.token, pace), granted.expires_at

    # -- the App's calls ---------------------------------------------------------------------

    def installation_id(self, repository: str) -> int:
        """`GET /repos/{owner}/{repo}/installation`, once per repository."""
        key = repository.lower()
        with self._lock:
            if key in self._installations:
                return self._installations[key]
        # Not `get_repo_installation`: it leaves `/` and dot segments in the path.
        path = f"{repository_path(repository)}/installation"
        try:
            _, data = self.integration().requester.requestJsonAndCheck("GET", path)
        except GithubException as exc:
            raise explain(
                exc,
                doing=f"finding the App's installation on {repository}",
                method="GET",
                path="/repos/{owner}/{repo}/installation",
                repository=repository,
            ) from None
        installation_id = int(data["id"])
        with self._lock:
            self._installations[key] = installation_id
        return installation_id

    def remember_installation(self, repository: str, installation_id: int) -> None:
        """The App's installation on `repository`, as another session of the same App found it:
        this one then never asks GitHub for it again."""
        with self._lock:
            self._installations[repository.lower()] = installation_id

    def create_installation_token(
        self,
        installation_id: int,
        *,
        repositories: list[str] | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> InstallationToken:
        """`POST /app/installations/{id}/access_tokens`, narrowed when asked to."""
        body: dict[str, Any] = {}
        if repositories:
            body["repositories"] = repositories
        if permissions:
            body["permissions"] = dict(permissions)
        try:
            _, data = self.integration().requester.requestJsonAndCheck(
                "POST", f"/app/installations/{installation_id}/access_tokens", input=body
            )
        except GithubException as exc:
            raise explain(
                exc,
                doing="creating an installation token",
                method="POST",
                path="/app/installations/{installation_id}/access_tokens",
            ) from None
        return InstallationToken(
            token=str(data["token"]),
            expires_at=datetime.fromisoformat(str(data["expires_at"]).replace("Z", "+00:00")),
            installation_id=installation_id,
            permissions=dict(data.get("permissions") or {}),
            repositories=tuple(str(r["full_name"]) for r in data.get("repositories") or []),
        )

    def revoke_installation_token(self, token: str) -> None:
        """`DELETE /installation/token`, authenticated with the token itself; gone is success."""
        client = self._token_client(token)
        try:
            client.requester.requestJsonAndCheck("DELETE", "/installation/token")
        except GithubException as exc:
            if exc.status == 401:  # expired or already revoked: nothing left to do
                return
            raise explain(
                exc,
                doing="revoking an installation token",
                method="DELETE",
                path="/installation/token",
            ) from None
