"""`deploy-key` and `github-token` for the conformance suite, against the sandbox (the GitHub
stand-in, `runkeys/sandbox/`) over real HTTP, through the same `GitHubSession` (an App and its
installation) the action and the service use.

A token is used for real through the sandbox's API: it reads the repository it was narrowed to,
and is refused another repository and a permission it was not given. A deploy key is checked
as far as the sandbox allows today: GitHub holds its public half, read-only, and the minted
private key signs what that public half verifies. The sandbox does not serve git over SSH yet
(`start_git_ssh`, its phase 2), so `git clone` with the key is not part of these tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from github import Auth, BadCredentialsException, Github, GithubException

from runkeys.github.session import AppCredentials, GitHubConfig, GitHubSession
from runkeys.providers.base import Minted, Provider, ProviderDeps
from runkeys.providers.deploy_key import TITLE_PREFIX, DeployKeyProvider
from runkeys.providers.github_token import GitHubTokenProvider
from runkeys.sandbox import Sandbox
from tests.providers.harness import Harness, closed_port_url

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

    def __init__(self) -> None:
        super().__init__()
        self.params = {"repository": "octo/app"}

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
        private = serialization.load_ssh_private_key(minted.value.encode(), password=None)
        assert isinstance(private, Ed25519PrivateKey)
        public = serialization.load_ssh_public_key(listed["key"].encode())
        assert isinstance(public, Ed25519PublicKey)
        challenge = b"runkeys deploy-key challenge"
        public.verify(private.sign(challenge), challenge)  # raises if the halves do not match
        assert minted.value.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        assert minted.value.endswith("-----END OPENSSH PRIVATE KEY-----\n")

    def refused(self, minted: Minted) -> None:
        assert self._listed(minted.reference) == []

    def leftovers(self, reference: str) -> list[str]:
        return [f"deploy key {k['id']}" for k in self._listed(reference)]

    def unknown_reference(self) -> str:
        return "octo/app:987654321"

    def injections(self) -> list[dict[str, Any]]:
        return [
            {"repository": "octo/app/../../admin"},
            {"repository": "octo/app?per_page=1"},
            {"repository": "../octo/app"},
            {"repository": "octo"},
            {"repository": "octo/app", "read_only": "false"},
            {"repository": "octo/app", "title": "x"},
        ]

    def backend_refusal(self) -> dict[str, Any]:
        return {"repository": "octo/elsewhere"}  # the App is not installed there


class GitHubTokenHarness(GitHubHarness):
    provider_class = GitHubTokenProvider
    same_label = "independent"

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
