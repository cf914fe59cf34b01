"""Deploy keys: PyGithub's create/get/list/delete, OpenSSH key checks, keys in use."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from github import GithubException, UnknownObjectException

from tests.sandbox.conftest import Seeded


def openssh_public_key(comment: str = "ci@runkeys") -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{raw.decode()} {comment}"


def test_create_get_list_delete_with_pygithub(seeded: Seeded) -> None:
    repo = seeded.github().get_repo("octo/app")
    public = openssh_public_key()
    key = repo.create_key("runkeys fixture", public, read_only=True)
    assert key.read_only is True
    assert key.key == " ".join(public.split()[:2])  # GitHub drops the comment
    assert key.title == "runkeys fixture"
    assert repo.get_key(key.id).key == key.key
    assert [k.id for k in repo.get_keys()] == [key.id]
    (stored,) = seeded.sb.deploy_keys(seeded.repo)
    assert stored["read_only"] is True
    assert stored["added_by"] == f"{seeded.app.slug}[bot]"
    key.delete()
    assert seeded.sb.deploy_keys(seeded.repo) == []
    with pytest.raises(UnknownObjectException):
        _ = repo.get_key(key.id).title


def test_write_key_and_other_key_types(seeded: Seeded) -> None:
    repo = seeded.github().get_repo("octo/app")
    assert repo.create_key("writer", openssh_public_key()).read_only is False
    ecdsa = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    assert repo.create_key("ecdsa", ecdsa.decode()).key.startswith("ecdsa-sha2-nistp256 ")


def test_created_answer_has_location(seeded: Seeded) -> None:
    answer = seeded.api(
        "POST", "/repos/octo/app/keys", seeded.token(), json={"key": openssh_public_key()}
    )
    assert answer.status_code == 201
    assert answer.headers["Location"] == answer.json()["url"]
    assert answer.json()["title"] == "ci@runkeys"  # no title: the key's comment


@pytest.mark.parametrize(
    "key",
    [
        "not a key",
        "ssh-ed25519",
        "ssh-ed25519 AAAAnotbase64!!",
        # an ed25519 blob under an rsa type
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIIVHDvMSzrpnHXukQJAMBP/5nUWEmdXg4jeeqjSsDMyq",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    ],
)
def test_invalid_keys_are_422(seeded: Seeded, key: str) -> None:
    answer = seeded.api(
        "POST", "/repos/octo/app/keys", seeded.token(), json={"title": "t", "key": key}
    )
    assert answer.status_code == 422
    body = answer.json()
    assert body["message"] == "Validation Failed"
    assert body["errors"][0]["message"].startswith("key is invalid")
    assert seeded.sb.deploy_keys(seeded.repo) == []


def test_a_key_can_be_used_once(seeded: Seeded) -> None:
    other = seeded.sb.add_repository("octo/other")
    public = openssh_public_key()
    seeded.github().get_repo("octo/app").create_key("first", public)
    token = seeded.sb.add_token([other], {"administration": "write"})
    with pytest.raises(GithubException) as info:
        seeded.github(token).get_repo("octo/other").create_key(
            "second", public.replace("ci@runkeys", "x")
        )
    assert info.value.status == 422
    assert info.value.data["errors"][0]["message"] == "key is already in use"


def test_missing_key_field_and_bad_ids(seeded: Seeded) -> None:
    token = seeded.token()
    missing = seeded.api("POST", "/repos/octo/app/keys", token, json={"title": "t"})
    assert (missing.status_code, missing.json()["message"]) == (
        422,
        'Invalid request.\n\n"key" wasn\'t supplied.',
    )
    assert seeded.api("GET", "/repos/octo/app/keys/abc", token).status_code == 404
    assert seeded.api("DELETE", "/repos/octo/app/keys/123", token).status_code == 404


def test_deploy_keys_need_administration(seeded: Seeded) -> None:
    token = seeded.token(permissions={"secrets": "write"})
    answer = seeded.api("POST", "/repos/octo/app/keys", token, json={"key": openssh_public_key()})
    assert answer.status_code == 403
    assert seeded.api("GET", "/repos/octo/app/keys", token).status_code == 403
