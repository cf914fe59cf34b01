"""`deploy-key`: an ed25519 key pair per key; the public half is added to a repository as a
deploy key (read-only unless the spec says otherwise), the private half is the key's value.

    FIXTURES_SSH_KEY: {provider: deploy-key, repository: octo/fixtures}

The value is the OpenSSH private key, several lines ending in a newline, as `ssh -i` and
`webfactory/ssh-agent` take it. The reference is `owner/name:<key id>`. GitHub's deploy keys
never expire: the TTL is kept by the service's sweeper. Needs the App's repository permission
"Administration: write" (https://docs.github.com/rest/deploy-keys/deploy-keys).

A key's title is `runkeys <label>`. A mint first deletes a key of the same title, left by an
earlier attempt whose answer was lost: its private half is gone, so nobody can use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from github import GithubException
from github.Repository import Repository

from runkeys.errors import GitHubError, ParamError, ProviderError
from runkeys.github.errors import explain
from runkeys.providers.base import (
    Minted,
    MintRequest,
    Provider,
    RevokeRequest,
    check_known,
    checked_name,
    from_github,
    get_str,
    github_of,
    http_transient,
    is_transient,
)

PARAMS = {"repository", "read_only"}
TITLE_PREFIX = "runkeys "
# GitHub's own rules for owner and repository names.
_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_REFERENCE = re.compile(r"^(?P<repository>[^:]+):(?P<id>[0-9]{1,20})$")
_KEYS_PATH = "/repos/{owner}/{repo}/keys"


def check_repository(field: str, value: Any) -> str:
    if not isinstance(value, str) or not _REPOSITORY.fullmatch(value) or ".." in value:
        raise ParamError(field, f"{value!r} is not an owner/name repository", fix="e.g. octo/app")
    return value


class DeployKeyProvider(Provider):
    name = "deploy-key"

    def check_params(self, params: Mapping[str, Any]) -> None:
        check_known(params, PARAMS)
        if "repository" not in params:
            raise ParamError("repository", "missing", fix="name the repository: owner/name")
        check_repository("repository", params["repository"])
        if not isinstance(params.get("read_only", True), bool):
            raise ParamError("read_only", "must be true or false")

    def mint(self, request: MintRequest) -> Minted:
        label = checked_name(self.name, "label", request.label)
        full_name = str(get_str(request.params, "repository"))
        read_only = bool(request.params.get("read_only", True))
        private_key = Ed25519PrivateKey.generate()
        value = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ).decode()
        public = private_key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        title = TITLE_PREFIX + label
        with self.scrubbed("mint", value), _refusals(full_name, "POST", _KEYS_PATH):
            repository = github_of(self.name, self.deps).repository(full_name)
            for stale in repository.get_keys():
                if stale.title == title:
                    stale.delete()
            created = repository.create_key(title, f"{public.decode()} {title}", read_only)
        return Minted(
            value=value, reference=f"{full_name}:{created.id}", expires_at=request.expires_at
        )

    def revoke(self, request: RevokeRequest) -> None:
        match = _REFERENCE.fullmatch(request.reference)
        if match is None:
            raise ProviderError(
                self.name, f"reference {request.reference!r} is not owner/name:id", retryable=False
            )
        full_name = check_repository("reference", match["repository"])
        path = _KEYS_PATH + "/{key_id}"
        with self.scrubbed("revoke"), _refusals(full_name, "DELETE", path, gone_ok=True):
            repository: Repository = github_of(self.name, self.deps).repository(full_name)
            repository.get_key(int(match["id"])).delete()

    def is_transient(self, exc: BaseException) -> bool:
        return http_transient(exc) or is_transient(exc)


@contextmanager
def _refusals(repository: str, method: str, path: str, *, gone_ok: bool = False) -> Iterator[None]:
    """GitHub's refusals as `ProviderError`s that say which permission is missing; with
    `gone_ok`, a 404 (the key is gone) is what revoke wanted. The repository's installation
    is looked up first, so a 404 here is not an App that lost access."""
    try:
        yield
    except GitHubError as exc:
        raise from_github(DeployKeyProvider.name, exc) from None
    except GithubException as exc:
        if gone_ok and exc.status == 404:
            return
        error = explain(
            exc, doing="managing a deploy key", method=method, path=path, repository=repository
        )
        raise from_github(DeployKeyProvider.name, error) from None
