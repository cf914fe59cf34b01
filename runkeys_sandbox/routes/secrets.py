"""Actions secrets of repositories, environments and organizations
(https://docs.github.com/rest/actions/secrets): public keys, create/update, get, list, delete.

Values are opened with the scope's private key and kept in memory so tests can read them back;
what cannot be opened with the current key is refused as GitHub refuses it (422).
"""

from __future__ import annotations

import re

from runkeys_sandbox.server import bodies
from runkeys_sandbox.server.errors import ApiError, not_found
from runkeys_sandbox.server.representations import public_key_json, secret_json
from runkeys_sandbox.server.routing import ORG, REPO, Call, Reply, Route, paginate
from runkeys_sandbox.server.state import SECRET_MAX_BYTES, Environment, Secret, SecretScope

NAME_CHARACTERS = (
    "Secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or underscores "
    "(_). Spaces are not allowed. Must start with a letter ([a-z], [A-Z]) or underscores (_)."
)
NAME_PREFIX = "Secret names must not start with GITHUB_."
IMPROPERLY_ENCRYPTED = "Bad request - validation failed due to an improperly encrypted secret"
TOO_LARGE = "Bad request - secret value exceeds the maximum size of 48 KB"  # UNVERIFIED wording
TOO_MANY = "Secret limit reached: at most {cap} secrets can be stored here"  # UNVERIFIED wording

_DOCS = "https://docs.github.com/rest/actions/secrets"
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # NAME_CHARACTERS, as a pattern


def secret_name_problem(name: str) -> str | None:
    """GitHub's own rules, not the product's (which may be stricter):
    https://docs.github.com/en/actions/security-for-github-actions/security-guides/using-secrets-in-github-actions#naming-your-secrets
    """
    if not SECRET_NAME.fullmatch(name):
        return NAME_CHARACTERS
    if name.upper().startswith("GITHUB_"):
        return NAME_PREFIX
    return None


def store(call: Call, scope: SecretScope, name: str, *, org: bool = False) -> Reply:
    """PUT a sealed value: 201 `{}` when new, 204 when it replaced one."""
    problem = secret_name_problem(name)
    if problem:
        raise ApiError(422, problem)
    body = call.body(bodies.ORG_SECRET if org else bodies.SECRET)
    if body["key_id"] != scope.key.key_id:
        raise ApiError(422, IMPROPERLY_ENCRYPTED)
    value = scope.key.unseal(body["encrypted_value"])
    if value is None:
        raise ApiError(422, IMPROPERLY_ENCRYPTED)
    if len(value) > SECRET_MAX_BYTES:
        raise ApiError(422, TOO_LARGE)
    key = name.upper()
    existing = scope.secrets.get(key)
    if existing is None and len(scope.secrets) >= scope.cap:
        raise ApiError(422, TOO_MANY.format(cap=scope.cap))
    now = call.now
    visibility = body.get("visibility") if org else None
    selected = body.get("selected_repository_ids") if org else None
    if existing is None:
        scope.secrets[key] = Secret(key, value, now, now, visibility, selected)
        return Reply(201, {})
    existing.value, existing.updated_at = value, now
    existing.visibility, existing.selected_repository_ids = visibility, selected
    return Reply(204)


def _secret(scope: SecretScope, name: str) -> Secret:
    secret = scope.secrets.get(name.upper())
    if secret is None:
        raise not_found()
    return secret


def _environment(call: Call) -> Environment:
    env = call.repository.environments.get(call.params["environment_name"].lower())
    if env is None:
        raise not_found()
    return env


# -- repository ---------------------------------------------------------------------------------


def repo_public_key(call: Call) -> Reply:
    key = call.repository.secrets.key
    return Reply(200, public_key_json(key.key_id, key.public_key_b64))


def list_repo_secrets(call: Call) -> Reply:
    items = [secret_json(s) for s in call.repository.secrets.sorted_secrets()]
    return paginate(call, items, key="secrets")


def get_repo_secret(call: Call) -> Reply:
    return Reply(200, secret_json(_secret(call.repository.secrets, call.params["secret_name"])))


def put_repo_secret(call: Call) -> Reply:
    return store(call, call.repository.secrets, call.params["secret_name"])


def delete_repo_secret(call: Call) -> Reply:
    scope = call.repository.secrets
    del scope.secrets[_secret(scope, call.params["secret_name"]).name]
    return Reply(204)


# -- environment --------------------------------------------------------------------------------


def env_public_key(call: Call) -> Reply:
    key = _environment(call).secrets.key
    return Reply(200, public_key_json(key.key_id, key.public_key_b64))


def list_env_secrets(call: Call) -> Reply:
    items = [secret_json(s) for s in _environment(call).secrets.sorted_secrets()]
    return paginate(call, items, key="secrets")


def get_env_secret(call: Call) -> Reply:
    secret = _secret(_environment(call).secrets, call.params["secret_name"])
    return Reply(200, secret_json(secret))


def put_env_secret(call: Call) -> Reply:
    return store(call, _environment(call).secrets, call.params["secret_name"])


def delete_env_secret(call: Call) -> Reply:
    scope = _environment(call).secrets
    del scope.secrets[_secret(scope, call.params["secret_name"]).name]
    return Reply(204)


# -- organization -------------------------------------------------------------------------------


def org_public_key(call: Call) -> Reply:
    assert call.account is not None
    key = call.account.secrets.key
    return Reply(200, public_key_json(key.key_id, key.public_key_b64))


def put_org_secret(call: Call) -> Reply:
    assert call.account is not None
    return store(call, call.account.secrets, call.params["secret_name"], org=True)


def delete_org_secret(call: Call) -> Reply:
    assert call.account is not None
    scope = call.account.secrets
    del scope.secrets[_secret(scope, call.params["secret_name"]).name]
    return Reply(204)


_REPO = "/repos/{owner}/{repo}/actions/secrets"
_ENV = "/repos/{owner}/{repo}/environments/{environment_name}/secrets"
_ORG = "/orgs/{org}/actions/secrets"

# Repeated on purpose: a table, one Route per GitHub endpoint with its docs anchor.
ROUTES = (
    Route(
        "GET", f"{_REPO}/public-key", repo_public_key, REPO, f"{_DOCS}#get-a-repository-public-key"
    ),
    Route("GET", _REPO, list_repo_secrets, REPO, f"{_DOCS}#list-repository-secrets"),
    Route(
        "GET", f"{_REPO}/{{secret_name}}", get_repo_secret, REPO, f"{_DOCS}#get-a-repository-secret"
    ),
    Route(
        "PUT",
        f"{_REPO}/{{secret_name}}",
        put_repo_secret,
        REPO,
        f"{_DOCS}#create-or-update-a-repository-secret",
    ),
    Route(
        "DELETE",
        f"{_REPO}/{{secret_name}}",
        delete_repo_secret,
        REPO,
        f"{_DOCS}#delete-a-repository-secret",
    ),
    Route(
        "GET", f"{_ENV}/public-key", env_public_key, REPO, f"{_DOCS}#get-an-environment-public-key"
    ),
    Route("GET", _ENV, list_env_secrets, REPO, f"{_DOCS}#list-environment-secrets"),
    Route(
        "GET", f"{_ENV}/{{secret_name}}", get_env_secret, REPO, f"{_DOCS}#get-an-environment-secret"
    ),
    Route(
        "PUT",
        f"{_ENV}/{{secret_name}}",
        put_env_secret,
        REPO,
        f"{_DOCS}#create-or-update-an-environment-secret",
    ),
    Route(
        "DELETE",
        f"{_ENV}/{{secret_name}}",
        delete_env_secret,
        REPO,
        f"{_DOCS}#delete-an-environment-secret",
    ),
    Route(
        "GET", f"{_ORG}/public-key", org_public_key, ORG, f"{_DOCS}#get-an-organization-public-key"
    ),
    Route(
        "PUT",
        f"{_ORG}/{{secret_name}}",
        put_org_secret,
        ORG,
        f"{_DOCS}#create-or-update-an-organization-secret",
    ),
    Route(
        "DELETE",
        f"{_ORG}/{{secret_name}}",
        delete_org_secret,
        ORG,
        f"{_DOCS}#delete-an-organization-secret",
    ),
)
