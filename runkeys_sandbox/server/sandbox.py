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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import requests

from runkeys_sandbox.launch import ThreadServer, started
from runkeys_sandbox.routes.oidc import API_VERSION, ISSUER_PATH, RUNNER_PATH
from runkeys_sandbox.server import webhooks
from runkeys_sandbox.server.app import SandboxApp
from runkeys_sandbox.server.control import Control
from runkeys_sandbox.server.faults import Faults
from runkeys_sandbox.server.oidc import OIDCIssuer, RunClaims
from runkeys_sandbox.server.ratelimit import SecondaryLimits
from runkeys_sandbox.server.recording import RecordedRequest, RequestLog
from runkeys_sandbox.server.representations import deploy_key_json
from runkeys_sandbox.server.seeding import RepoRef, Seeding
from runkeys_sandbox.server.state import (
    App,
    Clock,
    SecretScope,
    WorkflowRun,
    World,
)

if TYPE_CHECKING:
    from runkeys_sandbox.server.git_ssh import GitSSHServer


class Sandbox(Seeding):
    """A GitHub API stand-in on a free loopback port. Not started until `start()` (or `with`)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] | None = None,
        secondary_limits: SecondaryLimits | None = None,
        time_factor: float = 1.0,
        webhook_url: str | None = None,
    ) -> None:
        self.clock = Clock(clock or time.time)
        self.world = World(self.clock)
        self.enforce_rate_limits(secondary_limits, time_factor=time_factor)
        self._faults = Faults()
        self.inject_fault = self._faults.add  # one signature, documented on `Faults.add`
        self._log = RequestLog()
        self._host, self._port = host, port
        self._server: ThreadServer | None = None
        self._url: str | None = None
        self._git_ssh: GitSSHServer | None = None
        # Where the control API (`/_sandbox/`) sends the App's deliveries; None: nowhere.
        self.webhook_url = webhook_url

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Sandbox:
        if self._server is not None:
            raise RuntimeError("this sandbox was started already")
        app = SandboxApp(self.world, self._faults, self._log, lambda: self.url, Control(self))
        self._server = ThreadServer(app, self._host, self._port)
        self._url = f"http://{self._server.host}:{self._server.port}"
        with self.world.lock:  # nobody knows the port before this returns
            self.world.oidc_issuer_url = self.oidc_issuer_url
        return self

    def stop(self) -> None:
        if self._git_ssh is not None:
            self._git_ssh.stop()
            self._git_ssh = None
        if self._server is not None:
            self._server.stop()

    def start_git_ssh(self, port: int = 0) -> GitSSHServer:
        """Serve the repositories over SSH to their deploy keys (`.url(repo)` to clone)."""
        if self._git_ssh is None:
            try:
                from runkeys_sandbox.server.git_ssh import GitSSHServer  # noqa: PLC0415 (paramiko: optional)
            except ImportError as exc:
                raise RuntimeError(
                    "git over SSH needs paramiko: pip install 'runkeys[sandbox]'"
                ) from exc
            self._git_ssh = GitSSHServer(self.world, self._host, port)
            self._git_ssh.start()
        return self._git_ssh

    def __enter__(self) -> Sandbox:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API base URL (`GITHUB_API_URL`; PyGithub's `base_url`)."""
        return started(self._url, "the sandbox", fix="call start() first")

    @property
    def oidc_issuer_url(self) -> str:
        return f"{self.url}{ISSUER_PATH}"

    @property
    def oidc(self) -> OIDCIssuer:
        return self.world.oidc()

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox's time forward: tokens and JWTs expire without waiting."""
        self.clock.offset += seconds

    def enforce_rate_limits(
        self, secondary: SecondaryLimits | None = None, *, time_factor: float = 1.0
    ) -> None:
        """Enforce GitHub's secondary limits too (None: only the primary one, the default),
        with GitHub's time running `time_factor` times faster than the clock for both (60:
        a GitHub minute a second), as a benchmark of pacing under storms needs."""
        if not time_factor > 0:
            raise ValueError("time_factor must be > 0")
        with self.world.lock:
            self.world.rates.secondary = secondary
            self.world.rates.time_factor = time_factor

    def rate_limit_refusals(self) -> dict[tuple[str, str], int]:
        """Rate-limit refusals drawn so far, by (credential, limit): `installation:<id>` or
        `app:<id>`, and `primary`, `writes a minute`, `writes an hour`, `points a minute` or
        `concurrent requests`."""
        with self.world.lock:
            return dict(self.world.rates.refusals)

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

    def manifest_code(self, manifest: dict[str, Any], owner: str = "runkeys-sandbox") -> str:
        """The code GitHub's redirect carries once `owner` created an App from `manifest` in the
        browser: `POST /app-manifests/{code}/conversions` turns it into the App, once."""
        with self.world.lock:
            code = secrets.token_hex(10)
            self.world.manifest_codes[code] = (dict(manifest), owner, self.clock())
            return code

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._log.entries()

    def clear_requests(self) -> None:
        self._log.clear()


__all__ = ["RunClaims", "Sandbox", "SecondaryLimits", "WorkflowRun"]
