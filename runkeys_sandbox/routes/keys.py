"""Deploy keys (https://docs.github.com/rest/deploy-keys/deploy-keys): create, get, list, delete.
A key must be an OpenSSH public key and may be in use only once across all repositories."""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from runkeys_sandbox.server import bodies
from runkeys_sandbox.server.errors import validation_failed
from runkeys_sandbox.server.representations import deploy_key_json
from runkeys_sandbox.server.routing import REPO, Call, Reply, Route, paginate
from runkeys_sandbox.server.state import DeployKey, World

KEY_INVALID = "key is invalid. You must supply a key in OpenSSH public key format"
KEY_IN_USE = "key is already in use"
# The key types GitHub accepts (DSA keys are refused since 2022).
KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)

_DOCS = "https://docs.github.com/rest/deploy-keys/deploy-keys"


def normalize_public_key(text: str) -> tuple[str, str] | None:
    """(`<type> <base64>`, comment) of an OpenSSH public key line, or None if it is not one."""
    parts = text.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        return None
    try:
        serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except (ValueError, UnsupportedAlgorithm):
        return None
    return f"{parts[0]} {parts[1]}", parts[2] if len(parts) > 2 else ""


def key_in_use(world: World, key: str) -> bool:
    return any(
        k.key == key for repo in world.repositories.values() for k in repo.deploy_keys.values()
    )


def list_keys(call: Call) -> Reply:
    repo = call.repository
    keys = sorted(repo.deploy_keys.values(), key=lambda k: k.id)
    return paginate(call, [deploy_key_json(repo, k, call.base_url) for k in keys])


def _key(call: Call) -> DeployKey:
    return call.numbered(call.repository.deploy_keys, "key_id")


def get_key(call: Call) -> Reply:
    return Reply(200, deploy_key_json(call.repository, _key(call), call.base_url))


def create_key(call: Call) -> Reply:
    body: dict[str, Any] = call.body(bodies.DEPLOY_KEY)
    parsed = normalize_public_key(body["key"])
    if parsed is None:
        raise validation_failed("PublicKey", "key", KEY_INVALID)
    key_text, comment = parsed
    if key_in_use(call.world, key_text):
        raise validation_failed("PublicKey", "key", KEY_IN_USE)
    repo = call.repository
    token = call.caller.token
    added_by = None
    if token is not None and token.installation is not None:
        added_by = f"{token.installation.app.slug}[bot]"
    key = DeployKey(
        id=call.world.next_id("deploy_key"),
        title=body.get("title") or comment,
        key=key_text,
        read_only=bool(body.get("read_only", False)),
        created_at=call.now,
        added_by=added_by,
    )
    repo.deploy_keys[key.id] = key
    data = deploy_key_json(repo, key, call.base_url)
    return Reply(201, data, {"Location": data["url"]})


def delete_key(call: Call) -> Reply:
    del call.repository.deploy_keys[_key(call).id]
    return Reply(204)


_KEYS = "/repos/{owner}/{repo}/keys"

ROUTES = (
    Route("GET", _KEYS, list_keys, REPO, f"{_DOCS}#list-deploy-keys"),
    Route("POST", _KEYS, create_key, REPO, f"{_DOCS}#create-a-deploy-key"),
    Route("GET", f"{_KEYS}/{{key_id}}", get_key, REPO, f"{_DOCS}#get-a-deploy-key"),
    Route("DELETE", f"{_KEYS}/{{key_id}}", delete_key, REPO, f"{_DOCS}#delete-a-deploy-key"),
)
