"""`deploy-key`: an ed25519 key pair per key; the public half becomes a repository's deploy key
(https://docs.github.com/rest/deploy-keys/deploy-keys), the private half is the key's value.

GitHub chooses key ids, so a reference cannot carry the lease's label: revoke reads the key and
deletes it only if its title is `runkeys <the lease's label>` (docs/providers.md#deploy-key)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from github import GithubException
from github.Repository import Repository

from runkeys.errors import GitHubError, ParamError, ProviderError
from runkeys.github.errors import explain
from runkeys.providers.base import (
    # Repeated on purpose: each provider imports the base helpers it uses (a list, not logic).
    Minted,
    MintRequest,
    Provider,
    RevokeRequest,
    check_known,
    from_github,
    get_str,
    github_of,
    http_transient,
    is_transient,
    runkeys_account,
)

PARAMS = {"repository", "read_only"}
TITLE_PREFIX = "runkeys "
# GitHub's own rules for owner and repository names; `.` and `..` are no repository's name but
# would be dot segments in `/repos/{owner}/{repo}`.
_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/(?!\.\.?$)[A-Za-z0-9._-]{1,100}$")
_REFERENCE = re.compile(r"^(?P<repository>[^:]+):(?P<id>[0-9]{1,20})$")
_KEYS_PATH = "/repos/{owner}/{repo}/keys"


def check_repository(field: str, value: Any) -> str:
    if not isinstance(value, str) or not _REPOSITORY.fullmatch(value) or ".." in value:
        raise ParamError(field, f"{value!r} is not an owner/name repository", fix="e.g. octo/app")
    return value


class DeployKeyProvider(Provider):
    name = "deploy-key"
    github_permissions: ClassVar[Mapping[str, str]] = {"administration": "write"}

    def check_params(self, params: Mapping[str, Any]) -> None:
        check_known(params, PARAMS)
        if "repository" not in params:
            raise ParamError("repository", "missing", fix="name the repository: owner/name")
        check_repository("repository", params["repository"])
        if not isinstance(params.get("read_only", True), bool):
            raise ParamError("read_only", "must be true or false")

    def mint(self, request: MintRequest) -> Minted:
        label = runkeys_account(self.name, "label", request.label)
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
        full_name, key_id = self._parse_reference(request.reference)
        path = _KEYS_PATH + "/{key_id}"
        with self.scrubbed("revoke"), _refusals(full_name, "DELETE", path, gone_ok=True):
            repository: Repository = github_of(self.name, self.deps).repository(full_name)
            key = repository.get_key(key_id)
            self._check_title(key.title, request, full_name)
            key.delete()

    def reference_matches(self, reference: str, *, label: str, params: Mapping[str, Any]) -> bool:
        """`owner/name:<id>` in the repository the parameters name. The id is GitHub's: what it
        names is checked at revoke, by the key's title."""
        match = _REFERENCE.fullmatch(reference)
        repository = params.get("repository")
        return (
            match is not None
            and isinstance(repository, str)
            and match["repository"].lower() == repository.lower()
        )

    def github_repository(self, reference: str) -> str | None:
        match = _REFERENCE.fullmatch(reference)
        return None if match is None else match["repository"]

    def _parse_reference(self, reference: str) -> tuple[str, int]:
        match = _REFERENCE.fullmatch(reference)
        if match is None:
            raise ProviderError(
                self.name, f"reference {reference!r} is not owner/name:id", retryable=False
            )
        return check_repository("reference", match["repository"]), int(match["id"])

    def _check_title(self, title: str, request: RevokeRequest, repository: str) -> None:
        """Delete only the key runkeys made for this lease (any runkeys key for a ledger row
        older than labels); refuse anything else, loudly and for good."""
        if request.label is not None:
            mine = title == TITLE_PREFIX + runkeys_account(self.name, "label", request.label)
        else:
            mine = title.startswith(TITLE_PREFIX + "rk_")
        if not mine:
            raise ProviderError(
                self.name,
                f"refusing to delete deploy key {request.reference}: its title {title!r} is not "
                f"the one runkeys gave this lease's key ({TITLE_PREFIX}{request.label or 'rk_…'})",
                retryable=False,
                fix=f"the lease names a key runkeys did not make for it: a forged or damaged "
                f"ledger row; the key in {repository} is left alone. Check the lease's history",
            )

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
