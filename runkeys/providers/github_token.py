"""`github-token`: an installation token of the runkeys App, narrowed to the repositories and
permissions the spec names (https://docs.github.com/rest/apps/installations).

GitHub ends the token after an hour. Revoking needs the token itself, which only the runner
has, so the service's `revoke` (no value) calls nobody: docs/providers.md#github-token."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from runkeys.errors import GitHubError, ParamError
from runkeys.github.session import split_repository
from runkeys.providers.base import (
    # Repeated on purpose: each provider imports the base helpers it uses (a list, not logic).
    Minted,
    MintRequest,
    Provider,
    RevokeRequest,
    check_known,
    from_github,
    get_str_list,
    github_of,
    http_transient,
    is_transient,
)
from runkeys.providers.deploy_key import check_repository

PARAMS = {"repositories", "permissions"}
# https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app
MAX_REPOSITORIES = 500  # GitHub's limit per token
# The permissions an installation token may be narrowed to, and their levels: GitHub's
# `app-permissions` schema (POST /app/installations/{installation_id}/access_tokens).
_RW = ("read", "write")
PERMISSIONS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        [
            "actions",
            "administration",
            "artifact_metadata",
            "attestations",
            "checks",
            "code_quality",
            "codespaces",
            "contents",
            "dependabot_secrets",
            "deployments",
            "discussions",
            "environments",
            "issues",
            "merge_queues",
            "metadata",
            "packages",
            "pages",
            "pull_requests",
            "repository_custom_properties",
            "repository_hooks",
            "secret_scanning_alerts",
            "secrets",
            "security_events",
            "single_file",
            "statuses",
            "vulnerability_alerts",
            "members",
            "organization_administration",
            "organization_custom_roles",
            "organization_hooks",
            "organization_packages",
            "organization_secrets",
            "organization_self_hosted_runners",
            "organization_user_blocking",
            "organization_personal_access_tokens",
            "organization_personal_access_token_requests",
        ],
        _RW,
    ),
    "workflows": ("write",),
    "repository_projects": (*_RW, "admin"),
    "organization_projects": (*_RW, "admin"),
    "organization_events": ("read",),
    "organization_plan": ("read",),
}


class GitHubTokenProvider(Provider):
    name = "github-token"
    max_ttl = timedelta(hours=1)

    def check_params(self, params: Mapping[str, Any]) -> None:
        check_known(params, PARAMS)
        repositories = get_str_list(params, "repositories")
        if not repositories:
            raise ParamError("repositories", "missing", fix="name at least one: [owner/name]")
        if len(repositories) > MAX_REPOSITORIES:
            raise ParamError("repositories", f"more than GitHub's {MAX_REPOSITORIES}")
        owners = {check_repository("repositories", r).split("/")[0].lower() for r in repositories}
        if len(owners) > 1:
            raise ParamError(
                "repositories",
                "names repositories of several owners",
                fix="one token covers one installation: one owner's repositories",
            )
        _check_permissions(params.get("permissions"))

    def mint(self, request: MintRequest) -> Minted:
        repositories = get_str_list(request.params, "repositories")
        permissions = request.params.get("permissions") or None
        session = github_of(self.name, self.deps)
        with self.scrubbed("mint"):
            try:
                installation = session.installation_id(repositories[0])
                token = session.create_installation_token(
                    installation,
                    repositories=[split_repository(r)[1] for r in repositories],
                    permissions=permissions,
                )
            except GitHubError as exc:
                raise from_github(self.name, exc) from None
        digest = hashlib.sha256(token.token.encode()).hexdigest()[:16]
        return Minted(
            value=token.token,
            reference=f"installation/{installation}/token/{digest}",
            expires_at=token.expires_at,
        )

    def revoke(self, request: RevokeRequest) -> None:
        if request.value is None:
            return  # only the runner has the token; GitHub ends it within the hour
        session = github_of(self.name, self.deps)
        with self.scrubbed("revoke", request.value):
            try:
                session.revoke_installation_token(request.value)
            except GitHubError as exc:
                raise from_github(self.name, exc) from None

    def reference_matches(self, reference: str, *, label: str, params: Mapping[str, Any]) -> bool:
        """Any: the reference names a token by its digest, and what the service does with it
        is nothing (it has no value to revoke with). Naming another token gains nothing."""
        return True

    def is_transient(self, exc: BaseException) -> bool:
        return http_transient(exc) or is_transient(exc)


def _check_permissions(permissions: Any) -> None:
    if permissions is None:
        raise ParamError(
            "permissions", "missing", fix="name what the token may do, e.g. {contents: read}"
        )
    if not isinstance(permissions, Mapping) or not permissions:
        raise ParamError("permissions", "must be a mapping like {contents: read}")
    for name, level in permissions.items():
        if name not in PERMISSIONS:
            raise ParamError(
                f"permissions.{name}",
                "is not a GitHub App permission",
                fix="see the `app-permissions` list in GitHub's REST docs",
            )
        if level not in PERMISSIONS[name]:
            raise ParamError(f"permissions.{name}", f"must be one of {PERMISSIONS[name]}")
