"""GitHub App endpoints (https://docs.github.com/rest/apps/apps): the App itself, its
installations, installation tokens (one hour, optionally narrowed to repositories and
permissions), revoking a token with itself, and creating an App from a manifest's code."""

from __future__ import annotations

import re
import secrets
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from runkeys_sandbox.server import bodies
from runkeys_sandbox.server.auth import exceeds, installation_token_value, require_app
from runkeys_sandbox.server.errors import ApiError, not_found
from runkeys_sandbox.server.representations import app_json, installation_json, repository_json
from runkeys_sandbox.server.routing import APP, PUBLIC, SELF_TOKEN, Call, Reply, Route, paginate
from runkeys_sandbox.server.state import App, Installation, Repository, Token, World, iso

TOKEN_LIFETIME = 3600
NOT_ACCESSIBLE_REPOSITORIES = (
    "There is at least one repository that does not exist or is not accessible to the parent "
    "installation."
)
PERMISSIONS_NOT_GRANTED = "The permissions requested are not granted to this installation."
SUSPENDED = "This installation has been suspended"  # UNVERIFIED wording
# GitHub: "You must complete this step within one hour" of the redirect, and a code works once.
MANIFEST_CODE_LIFETIME = 3600

_DOCS = "https://docs.github.com/rest/apps/apps"


def get_app(call: Call) -> Reply:
    app = require_app(call.caller)
    count = sum(1 for i in call.world.installations.values() if i.app is app)
    return Reply(200, app_json(app, call.base_url, count))


def _installation(call: Call) -> Installation:
    app = require_app(call.caller)
    installation = call.numbered(call.world.installations, "installation_id")
    if installation.app is not app:
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


def list_installations(call: Call) -> Reply:
    app = require_app(call.caller)
    installations = sorted(
        (i for i in call.world.installations.values() if i.app is app), key=lambda i: i.id
    )
    return paginate(call, [installation_json(i, call.base_url) for i in installations])


def get_account_installation(call: Call) -> Reply:
    """`GET /orgs/{org}/installation` and `GET /users/{username}/installation`."""
    app = require_app(call.caller)
    login = (call.params.get("org") or call.params.get("username") or "").lower()
    kind = "Organization" if "org" in call.params else "User"
    for installation in call.world.installations.values():
        account = installation.account
        if installation.app is app and account.login.lower() == login and account.type == kind:
            return Reply(200, installation_json(installation, call.base_url))
    raise not_found()


def list_installation_repositories(call: Call) -> Reply:
    """`GET /installation/repositories`: what the calling installation token can reach."""
    token = call.caller.token
    assert token is not None
    world = call.world
    reachable = sorted(
        (r for r in world.repositories.values() if r.id in world.token_repository_ids(token)),
        key=lambda r: r.id,
    )
    reply = paginate(
        call, [repository_json(r, call.base_url) for r in reachable], key="repositories"
    )
    selected = token.repository_ids is not None or (
        token.installation is not None and token.installation.repository_ids is not None
    )
    reply.body["repository_selection"] = "selected" if selected else "all"
    return reply


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
    for name in names:  # names without the owner, as GitHub documents them
        repo = by_name.get(name.lower())
        if repo is None:
            raise ApiError(422, NOT_ACCESSIBLE_REPOSITORIES)
        chosen[repo.id] = repo
    for ident in ids:
        if ident not in by_id:
            raise ApiError(422, NOT_ACCESSIBLE_REPOSITORIES)
        chosen[ident] = by_id[ident]
    return sorted(chosen.values(), key=lambda r: r.id)


def create_from_manifest(call: Call) -> Reply:
    """The App a manifest's owner created in the browser, with its secrets, once per code
    (https://docs.github.com/apps/sharing-github-apps/registering-a-github-app-from-a-manifest)."""
    world = call.world
    found = world.manifest_codes.pop(call.params["code"], None)
    if found is None or call.now - found[2] > MANIFEST_CODE_LIFETIME:
        raise not_found()
    manifest, owner, _ = found
    ident = world.next_id("app")
    name = str(manifest.get("name") or f"runkeys-{ident}")
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or f"app-{ident}"
    if any(a.slug == slug for a in world.apps.values()):
        slug = f"{slug}-{ident}"
    app = App(
        id=ident,
        slug=slug,
        name=name,
        owner=world.account(owner),
        webhook_secret=secrets.token_hex(20),
        created_at=call.now,
        private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        permissions={"metadata": "read", **dict(manifest.get("default_permissions") or {})},
        events=list(manifest.get("default_events") or []),
        client_secret=secrets.token_hex(20),
    )
    world.apps[ident] = app
    body = {
        **app_json(app, call.base_url, 0),
        "client_secret": app.client_secret,
        "webhook_secret": app.webhook_secret,
        "pem": app.private_key_pem,
    }
    return Reply(201, body)


def revoke_token(call: Call) -> Reply:
    assert call.caller.token is not None
    call.caller.token.revoked = True
    return Reply(204)


ROUTES = (
    Route("GET", "/app", get_app, APP, f"{_DOCS}#get-the-authenticated-app"),
    Route(
        "POST",
        "/app-manifests/{code}/conversions",
        create_from_manifest,
        PUBLIC,
        f"{_DOCS}#create-a-github-app-from-a-manifest",
    ),
    Route(
        "GET",
        "/app/installations",
        list_installations,
        APP,
        f"{_DOCS}#list-installations-for-the-authenticated-app",
    ),
    Route(
        "GET",
        "/orgs/{org}/installation",
        get_account_installation,
        APP,
        f"{_DOCS}#get-an-organization-installation-for-the-authenticated-app",
    ),
    Route(
        "GET",
        "/users/{username}/installation",
        get_account_installation,
        APP,
        f"{_DOCS}#get-a-user-installation-for-the-authenticated-app",
    ),
    Route(
        "GET",
        "/installation/repositories",
        list_installation_repositories,
        SELF_TOKEN,
        "https://docs.github.com/rest/apps/installations"
        "#list-repositories-accessible-to-the-app-installation",
    ),
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
