"""GitHub App endpoints (https://docs.github.com/rest/apps/apps): the App itself, its
installations, installation tokens (one hour, optionally narrowed to repositories and
permissions), and revoking a token with itself."""

from __future__ import annotations

from typing import Any

from runkeys.sandbox import bodies
from runkeys.sandbox.auth import exceeds, installation_token_value, require_app
from runkeys.sandbox.errors import ApiError, not_found
from runkeys.sandbox.representations import app_json, installation_json, repository_json
from runkeys.sandbox.routing import APP, SELF_TOKEN, Call, Reply, Route
from runkeys.sandbox.state import Installation, Repository, Token, World, iso

TOKEN_LIFETIME = 3600
NOT_ACCESSIBLE_REPOSITORIES = (
    "There is at least one repository that does not exist or is not accessible to the parent "
    "installation."
)
PERMISSIONS_NOT_GRANTED = "The permissions requested are not granted to this installation."
SUSPENDED = "This installation has been suspended"  # UNVERIFIED wording

_DOCS = "https://docs.github.com/rest/apps/apps"


def get_app(call: Call) -> Reply:
    app = require_app(call.caller)
    count = sum(1 for i in call.world.installations.values() if i.app is app)
    return Reply(200, app_json(app, call.base_url, count))


def _installation(call: Call) -> Installation:
    app = require_app(call.caller)
    text = call.params["installation_id"]
    installation = call.world.installations.get(int(text)) if text.isdigit() else None
    if installation is None or installation.app is not app:
        raise not_found()
    return installation


def get_installation(call: Call) -> Reply:
    return Reply(200, installation_json(_installation(call), call.base_url))


def get_repo_installation(call: Call) -> Reply:
    app = require_app(call.caller)
    repo = call.world.repository(call.params["owner"], call.params["repo"])
    installation = call.world.installation_for(app, repo) if repo else None
    if installation is None:
        raise not_found()
    return Reply(200, installation_json(installation, call.base_url))


def create_access_token(call: Call) -> Reply:
    installation = _installation(call)
    body: dict[str, Any] = call.body(bodies.ACCESS_TOKEN, optional=True)
    repos = _narrowed_repositories(call, installation, body)
    token = mint_installation_token(
        call.world, installation, repos, body.get("permissions") or None
    )
    selected = repos is not None or installation.repository_ids is not None
    data: dict[str, Any] = {
        "token": token.value,
        "expires_at": iso(token.expires_at or 0),
        "permissions": token.permissions,
        "repository_selection": "selected" if selected else "all",
    }
    if repos is not None:
        data["repositories"] = [repository_json(r, call.base_url) for r in repos]
    return Reply(201, data)


def mint_installation_token(
    world: World,
    installation: Installation,
    repos: list[Repository] | None,
    requested: dict[str, Any] | None,
) -> Token:
    """A one-hour token of `installation`, narrowed to `repos` and `requested` permissions."""
    if installation.suspended_at is not None:
        raise ApiError(403, SUSPENDED)
    if requested and exceeds(requested, installation.permissions):
        raise ApiError(422, PERMISSIONS_NOT_GRANTED)
    permissions = dict(requested) if requested else dict(installation.permissions)
    if "metadata" in installation.permissions:  # always part of an installation token
        permissions.setdefault("metadata", installation.permissions["metadata"])
    now = world.now()
    token = Token(
        value=installation_token_value(installation.app.id),
        kind="installation",
        permissions=permissions,
        repository_ids=frozenset(r.id for r in repos) if repos is not None else None,
        created_at=now,
        expires_at=now + TOKEN_LIFETIME,
        installation=installation,
    )
    world.tokens[token.value] = token
    return token


def _narrowed_repositories(
    call: Call, installation: Installation, body: dict[str, Any]
) -> list[Repository] | None:
    names: list[str] = body.get("repositories") or []
    ids: list[int] = body.get("repository_ids") or []
    if not names and not ids:
        return None
    reachable = call.world.installation_repositories(installation)
    by_name = {r.name.lower(): r for r in reachable}
    by_id = {r.id: r for r in reachable}
    chosen: dict[int, Repository] = {}
    for name in names:
        # A name may be given as "owner/name" only for the installation's own account.
        owner, _, short = name.rpartition("/")
        repo = by_name.get(short.lower())
        if repo is None or (owner and owner.lower() != installation.account.login.lower()):
            raise ApiError(422, NOT_ACCESSIBLE_REPOSITORIES)
        chosen[repo.id] = repo
    for ident in ids:
        if ident not in by_id:
            raise ApiError(422, NOT_ACCESSIBLE_REPOSITORIES)
        chosen[ident] = by_id[ident]
    return sorted(chosen.values(), key=lambda r: r.id)


def revoke_token(call: Call) -> Reply:
    assert call.caller.token is not None
    call.caller.token.revoked = True
    return Reply(204)


ROUTES = (
    Route("GET", "/app", get_app, APP, f"{_DOCS}#get-the-authenticated-app"),
    Route(
        "GET",
        "/app/installations/{installation_id}",
        get_installation,
        APP,
        f"{_DOCS}#get-an-installation-for-the-authenticated-app",
    ),
    Route(
        "POST",
        "/app/installations/{installation_id}/access_tokens",
        create_access_token,
        APP,
        f"{_DOCS}#create-an-installation-access-token-for-an-app",
    ),
    Route(
        "GET",
        "/repos/{owner}/{repo}/installation",
        get_repo_installation,
        APP,
        f"{_DOCS}#get-a-repository-installation-for-the-authenticated-app",
    ),
    Route(
        "DELETE",
        "/installation/token",
        revoke_token,
        SELF_TOKEN,
        "https://docs.github.com/rest/apps/installations#revoke-an-installation-access-token",
    ),
)
