"""`deploy-key` and `github-token` for the conformance suite, against the sandbox (the GitHub
stand-in, `runkeys_sandbox/`) over real HTTP, through the same `GitHubSession` (an App and its
installation) the action and the service use.

A token is used for real through the sandbox's API: it reads the repository it was narrowed to,
and is refused another repository and a permission it was not given. A deploy key is used for
real with OpenSSH and git through the sandbox's git-over-SSH server: the minted private key
clones the repository, a push is refused (read-only), and once revoked the key is refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from github import Auth, BadCredentialsException, Github, GithubException

from runkeys.github.session import AppCredentials, GitHubConfig, GitHubSession
from runkeys.providers.base import Minted, Provider, ProviderDeps
from runkeys.providers.deploy_key import TITLE_PREFIX, DeployKeyProvider
from runkeys.providers.github_token import GitHubTokenProvider
from runkeys_sandbox.server.sandbox import Sandbox
from tests.providers.harness import Harness, closed_port_url
from tests.services import skip_or_fail

INSTALLATION_PERMISSIONS = {
    "administration": "write",
    "contents": "read",
    "secrets": "read",
    "metadata": "read",
}


class GitHubHarness(Harness):
    """The sandbox with a repository the App is installed on, one it is installed on but a
    token is not narrowed to, and one it is not installed on."""

    provider_class: type[Provider]

    def __init__(self) -> None:
        super().__init__()
        self.connection = None
        self.sandbox = Sandbox()
        self.provider = self.provider_class()  # enough for the spec check; `setup` adds GitHub

    def setup(self) -> None:
        sandbox = self.sandbox.start()
        self.repository = sandbox.add_repository("octo/app")
        self.other = sandbox.add_repository("octo/other")
        sandbox.add_repository("octo/elsewhere")
        self.app = sandbox.add_app()
        sandbox.install(self.app, [self.repository, self.other], INSTALLATION_PERMISSIONS)
        self.provider = self._provider(sandbox.url, self.app.private_key_pem)

    def _provider(self, api_url: str, private_key: str) -> Provider:
        config = GitHubConfig(
            api_url=api_url,
            app=AppCredentials(str(self.app.id), private_key),
            retries=1,
            backoff_factor=0.01,
        )
        return self.provider_class(ProviderDeps(github=GitHubSession(config)))

    @contextmanager
    def backend_down(self) -> Iterator[None]:
        saved = self.provider
        self.provider = self._provider(closed_port_url(self.sandbox.url), self.app.private_key_pem)
        try:
            yield
        finally:
            self.provider = saved

    @contextmanager
    def wrong_account(self) -> Iterator[None]:
        """An App key GitHub does not know (a key revoked in the App's settings, say)."""
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = stranger.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()
        saved = self.provider
        self.provider = self._provider(self.sandbox.url, pem)
        try:
            yield
        finally:
            self.provider = saved

    def cleanup(self) -> None:
        self.sandbox.stop()


class DeployKeyHarness(GitHubHarness):
    provider_class = DeployKeyProvider
    same_label = "replaced"
    bound = "revoke"  # by the key's title

    def __init__(self) -> None:
        super().__init__()
        self.params = {"repository": "octo/app"}
        self.workdir: Path | None = None  # made by `setup`: the spec-only tests need none

    def setup(self) -> None:
        if not all(shutil.which(tool) for tool in ("ssh", "git")):
            skip_or_fail("the deploy-key tests need the OpenSSH client and git")
        self.workdir = Path(tempfile.mkdtemp(prefix="rk-deploy-key-"))
        super().setup()
        self.git_ssh = self.sandbox.start_git_ssh()

    def git(
        self, minted: Minted, *args: str, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """git with the minted private key as its only SSH identity."""
        assert self.workdir is not None
        key = self.workdir / f"key-{minted.reference.rpartition(':')[2]}"
        key.write_text(minted.value)
        key.chmod(0o600)  # ssh refuses a key others can read
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.workdir),
            "GIT_SSH_COMMAND": (
                f"ssh -i {key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no"
                " -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
            ),
            "GIT_TERMINAL_PROMPT": "0",
        }
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def _listed(self, reference_or_label: str) -> list[dict[str, Any]]:
        keys = self.sandbox.deploy_keys(self.repository)
        key_id = reference_or_label.rpartition(":")[2]
        return [
            k
            for k in keys
            if str(k["id"]) == key_id or k["title"] == TITLE_PREFIX + reference_or_label
        ]

    def use(self, minted: Minted) -> None:
        (listed,) = self._listed(minted.reference)
        assert listed["read_only"] is True
        clone = Path(tempfile.mkdtemp(dir=self.workdir)) / "app"
        cloned = self.git(minted, "clone", "--quiet", self.git_ssh.url(self.repository), str(clone))
        assert cloned.returncode == 0, cloned.stderr
        assert (clone / "README.md").read_text().startswith("# octo/app")
        (clone / "change.txt").write_text("a push a read-only key may not make\n")
        identity = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
        self.git(minted, *identity, "add", "change.txt", cwd=clone)
        self.git(minted, *identity, "commit", "-q", "-m", "change", cwd=clone)
        pushed = self.git(minted, "push", "-q", "origin", "main", cwd=clone)
        assert pushed.returncode != 0
        assert "marked as read only" in pushed.stderr
        private = serialization.load_ssh_private_key(minted.value.encode(), password=None)
        assert isinstance(private, Ed25519PrivateKey)
        assert minted.value.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        assert minted.value.endswith("-----END OPENSSH PRIVATE KEY-----\n")

    def refused(self, minted: Minted) -> None:
        assert self._listed(minted.reference) == []
        listed = self.git(minted, "ls-remote", self.git_ssh.url(self.repository))
        assert listed.returncode != 0
        assert "Permission denied (publickey)" in listed.stderr

    def cleanup(self) -> None:
        super().cleanup()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def leftovers(self, reference: str) -> list[str]:
        return [f"deploy key {k['id']}" for k in self._listed(reference)]

    def unknown_reference(self) -> str:
        return "octo/app:987654321"

    def injections(self) -> list[dict[str, Any]]:
        return [
            {"repository": "octo/app/../../admin"},
            {"repository": "octo/app?per_page=1"},
            {"repository": "../octo/app"},
            {"repository": "octo/."},
            {"repository": "octo"},
            {"repository": "octo/app", "read_only": "false"},
            {"repository": "octo/app", "title": "x"},
        ]

    def backend_refusal(self) -> dict[str, Any]:
        return {"repository": "octo/elsewhere"}  # the App is not installed there


class GitHubTokenHarness(GitHubHarness):
    provider_class = GitHubTokenProvider
    same_label = "independent"
    bound = "nothing"  # the service cannot revoke a token; the runner revokes with its value

    def __init__(self) -> None:
        super().__init__()
        self.params = {"repositories": ["octo/app"], "permissions": {"contents": "read"}}
        self.values: dict[str, str] = {}

    def mint(self, params: Any = None, **overrides: Any) -> Minted:
        minted = super().mint(params, **overrides)
        self.values[minted.reference] = minted.value
        return minted

    def revoke_value(self, minted: Minted | None) -> str | None:
        return None if minted is None else minted.value

    def _client(self, token: str) -> Github:
        return Github(
            auth=Auth.Token(token),
            base_url=self.sandbox.url,
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=None,
        )

    def use(self, minted: Minted) -> None:
        client = self._client(minted.value)
        assert client.get_repo("octo/app").full_name == "octo/app"
        with pytest.raises(GithubException) as caught:
            client.get_repo("octo/other").full_name  # noqa: B018 (the request is the test)
        assert caught.value.status == 404  # not one of the token's repositories
        with pytest.raises(GithubException) as caught:
            list(client.get_repo("octo/app").get_secrets())
        assert caught.value.status == 403  # a permission the token was not given

    def refused(self, minted: Minted) -> None:
        with pytest.raises(BadCredentialsException):
            self._client(minted.value).get_repo("octo/app").full_name  # noqa: B018

    def leftovers(self, reference: str) -> list[str]:
        value = self.values.get(reference)
        live = value is not None and self.sandbox.token_is_live(value)
        return [f"live token {reference}"] if live else []

    def injections(self) -> list[dict[str, Any]]:
        return [
            {"repositories": ["octo/app", "evil/app"], "permissions": {"contents": "read"}},
            {"repositories": ["octo/app/../x"], "permissions": {"contents": "read"}},
            {"repositories": ["octo/."], "permissions": {"contents": "read"}},
            {"repositories": ["octo/app"], "permissions": {"contents": "admin"}},
            {"repositories": ["octo/app"], "permissions": {"contents; x": "read"}},
            {"repositories": ["octo/app"], "permissions": {"contents": "read "}},
            {"repositories": ["octo/app"], "permissions": {}},
            {"repositories": ["octo/app"]},
            {"repositories": [], "permissions": {"contents": "read"}},
        ]

    def backend_refusal(self) -> dict[str, Any]:
        # More than the installation holds: GitHub answers 422.
        return {"repositories": ["octo/app"], "permissions": {"secrets": "write"}}
