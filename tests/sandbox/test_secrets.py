"""Actions secrets through PyGithub and raw HTTP: sealing, 201/204/404, GitHub's name rules, the
per-scope cap, the size limit, key rotation, pagination."""

from __future__ import annotations

import base64
import re

import pytest
from github import GithubException
from nacl.public import PrivateKey, PublicKey, SealedBox

from runkeys_sandbox.server.sealing import seal
from tests.sandbox.conftest import Seeded

PUT_SECRET = "/repos/octo/app/actions/secrets/{}"


def test_pygithub_create_update_delete_round_trip(seeded: Seeded) -> None:
    repo = seeded.github().get_repo("octo/app")
    repo.create_secret("db_password", "first value")
    assert seeded.sb.secret_value(seeded.repo, "DB_PASSWORD") == "first value"
    repo.create_secret("DB_PASSWORD", "second\nvalue ✓")
    assert seeded.sb.secret_value(seeded.repo, "db_password") == "second\nvalue ✓"
    assert [s.name for s in repo.get_secrets()] == ["DB_PASSWORD"]
    assert repo.delete_secret("DB_PASSWORD") is True
    assert repo.delete_secret("DB_PASSWORD") is False  # PyGithub: status == 204
    assert seeded.sb.secret_names(seeded.repo) == []
    puts = [r.status for r in seeded.sb.requests if r.method == "PUT"]
    deletes = [r.status for r in seeded.sb.requests if r.method == "DELETE"]
    assert (puts, deletes) == ([201, 204], [204, 404])


def test_request_log_keeps_the_value_sealed(seeded: Seeded) -> None:
    seeded.github().get_repo("octo/app").create_secret("API_KEY", "plain-text-value-42")
    put = next(r for r in seeded.sb.requests if r.method == "PUT")
    body = put.json()
    assert "plain-text-value-42" not in (put.request_body or "")
    assert body["key_id"] == seeded.sb.public_key(seeded.repo)[0]
    assert all("plain-text-value-42" not in repr(r) for r in seeded.sb.requests)


def test_public_key_is_a_real_x25519_key(seeded: Seeded) -> None:
    answer = seeded.api("GET", "/repos/octo/app/actions/secrets/public-key", seeded.token())
    assert answer.status_code == 200
    data = answer.json()
    assert isinstance(data["key_id"], str)
    assert len(base64.b64decode(data["key"])) == 32
    sealed = SealedBox(PublicKey(base64.b64decode(data["key"]))).encrypt(b"by hand")
    put = seeded.api(
        "PUT",
        PUT_SECRET.format("BY_HAND"),
        seeded.token(),
        json={"encrypted_value": base64.b64encode(sealed).decode(), "key_id": data["key_id"]},
    )
    assert (put.status_code, put.json()) == (201, {})
    assert seeded.sb.secret_value(seeded.repo, "BY_HAND") == "by hand"


def test_get_secret_and_absent_secret(seeded: Seeded) -> None:
    token = seeded.token()
    seeded.github(token).get_repo("octo/app").create_secret("PRESENT", "v")
    got = seeded.api("GET", "/repos/octo/app/actions/secrets/present", token)
    assert got.status_code == 200
    assert got.json()["name"] == "PRESENT"
    assert set(got.json()) == {"name", "created_at", "updated_at"}
    missing = seeded.api("GET", "/repos/octo/app/actions/secrets/ABSENT", token)
    assert missing.status_code == 404
    assert missing.json()["message"] == "Not Found"
    assert missing.json()["documentation_url"].startswith(
        "https://docs.github.com/rest/actions/secrets"
    )


def _put(seeded: Seeded, name: str, body: object, token: str | None = None):  # type: ignore[no-untyped-def]
    return seeded.api("PUT", PUT_SECRET.format(name), token or seeded.token(), json=body)


def _sealed_body(seeded: Seeded, value: str | bytes) -> dict[str, str]:
    key_id, key = seeded.sb.public_key(seeded.repo)
    return {"encrypted_value": seal(key, value), "key_id": key_id}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("1STARTS_WITH_DIGIT", "Secret names can only contain alphanumeric characters"),
        ("HAS-DASH", "Secret names can only contain alphanumeric characters"),
        ("GITHUB_TOKEN", "Secret names must not start with GITHUB_."),
        ("github_mine", "Secret names must not start with GITHUB_."),
        ("WITH%20SPACE", "Secret names can only contain alphanumeric characters"),
    ],
)
def test_secret_name_rules(seeded: Seeded, name: str, message: str) -> None:
    answer = _put(seeded, name, _sealed_body(seeded, "v"))
    assert answer.status_code == 422
    assert answer.json()["message"].startswith(message)
    assert seeded.sb.secret_names(seeded.repo) == []


def test_leading_underscore_is_allowed(seeded: Seeded) -> None:
    assert _put(seeded, "_PRIVATE", _sealed_body(seeded, "v")).status_code == 201


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"key_id": "1"}, 422, 'Invalid request.\n\n"encrypted_value" wasn\'t supplied.'),
        ({"encrypted_value": "c2VjcmV0"}, 422, 'Invalid request.\n\n"key_id" wasn\'t supplied.'),
        (
            {"encrypted_value": "not base64!", "key_id": "1"},
            422,
            "Invalid request.\n\nnot base64! does not match /^(?:[A-Za-z0-9+\\/]{4})*",
        ),
        (
            {"encrypted_value": 12, "key_id": "1"},
            422,
            "Invalid request.\n\nFor 'properties/encrypted_value', 12 is not a string.",
        ),
        ([], 422, "Invalid request.\n\nFor 'links/0/schema', [] is not an object."),
        (None, 422, "Invalid request.\n\nFor 'links/0/schema', nil is not an object."),
    ],
)
def test_malformed_bodies(seeded: Seeded, body: object, status: int, message: str) -> None:
    answer = _put(seeded, "NAME", body)
    assert answer.status_code == status
    assert answer.json()["message"].startswith(message)


def test_unparseable_json_is_400(seeded: Seeded) -> None:
    answer = seeded.api(
        "PUT",
        PUT_SECRET.format("NAME"),
        seeded.token(),
        data=b'{"key_id": ',
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json()["message"] == "Problems parsing JSON"


def test_values_not_sealed_to_the_current_key_are_refused(seeded: Seeded) -> None:
    key_id, key = seeded.sb.public_key(seeded.repo)
    stranger = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()
    cases = [
        {"encrypted_value": seal(key, "v"), "key_id": "1234"},  # wrong key_id
        {"encrypted_value": seal(stranger, "v"), "key_id": key_id},  # sealed to another key
        {"encrypted_value": base64.b64encode(b"x" * 60).decode(), "key_id": key_id},  # no box
        {"encrypted_value": "c2VjcmV0", "key_id": key_id},  # too short to be a box
    ]
    for body in cases:
        answer = _put(seeded, "NAME", body)
        assert answer.status_code == 422, body
        assert answer.json()["message"] == (
            "Bad request - validation failed due to an improperly encrypted secret"
        )
    assert seeded.sb.secret_names(seeded.repo) == []


def test_rotation_refuses_values_sealed_to_the_old_key(seeded: Seeded) -> None:
    old = _sealed_body(seeded, "v")
    new_id = seeded.sb.rotate_public_key(seeded.repo)
    assert new_id != old["key_id"]
    assert _put(seeded, "NAME", old).status_code == 422
    assert _put(seeded, "NAME", _sealed_body(seeded, "v")).status_code == 201


def test_size_limit_is_48_kb(seeded: Seeded) -> None:
    assert _put(seeded, "BIG", _sealed_body(seeded, "a" * 48 * 1024)).status_code == 201
    too_big = _put(seeded, "BIGGER", _sealed_body(seeded, "a" * (48 * 1024 + 1)))
    assert too_big.status_code == 422
    assert seeded.sb.secret_names(seeded.repo) == ["BIG"]


def test_one_hundred_secrets_per_repository(seeded: Seeded) -> None:
    token = seeded.token()
    for n in range(100):
        assert _put(seeded, f"S{n:03}", _sealed_body(seeded, "v"), token).status_code == 201
    assert _put(seeded, "ONE_TOO_MANY", _sealed_body(seeded, "v"), token).status_code == 422
    assert _put(seeded, "S000", _sealed_body(seeded, "updated"), token).status_code == 204


def test_list_pagination_and_link_header(seeded: Seeded) -> None:
    token = seeded.token()
    for n in range(5):
        _put(seeded, f"S{n}", _sealed_body(seeded, "v"), token)
    first = seeded.api("GET", "/repos/octo/app/actions/secrets?per_page=2", token)
    assert first.json()["total_count"] == 5
    assert [s["name"] for s in first.json()["secrets"]] == ["S0", "S1"]
    links = dict(re.findall(r'<([^>]+)>; rel="(\w+)"', first.headers["Link"]))
    by_rel = {rel: url for url, rel in links.items()}
    assert set(by_rel) == {"next", "last"}
    assert f"/repositories/{seeded.repo.id}/actions/secrets?per_page=2&page=2" in by_rel["next"]
    follow = seeded.api("GET", by_rel["last"].removeprefix(seeded.sb.url), token)
    assert [s["name"] for s in follow.json()["secrets"]] == ["S4"]
    assert 'rel="prev"' in follow.headers["Link"]
    # PyGithub follows the Link headers through the /repositories/{id} alias.
    client = seeded.github(token, per_page=2)
    assert [s.name for s in client.get_repo("octo/app").get_secrets()] == [
        f"S{n}" for n in range(5)
    ]


def test_per_page_is_capped_at_100_and_defaults_to_30(seeded: Seeded) -> None:
    token = seeded.token()
    for n in range(31):
        _put(seeded, f"S{n:02}", _sealed_body(seeded, "v"), token)
    assert len(seeded.api("GET", "/repos/octo/app/actions/secrets", token).json()["secrets"]) == 30
    big = seeded.api("GET", "/repos/octo/app/actions/secrets?per_page=500", token)
    assert len(big.json()["secrets"]) == 31
    assert "Link" not in big.headers


def test_environment_secrets_with_pygithub(seeded: Seeded) -> None:
    repo = seeded.github().get_repo("octo/app")
    env = repo.create_environment("ci-run-7")
    env.create_secret("DEPLOY_TOKEN", "env value")
    assert (
        seeded.sb.secret_value(seeded.repo, "DEPLOY_TOKEN", environment="CI-RUN-7") == "env value"
    )
    assert seeded.sb.secret_names(seeded.repo) == []  # not a repository secret
    assert [s.name for s in env.get_secrets()] == ["DEPLOY_TOKEN"]
    assert env.delete_secret("DEPLOY_TOKEN") is True
    assert env.delete_secret("DEPLOY_TOKEN") is False
    env_key = seeded.sb.public_key(seeded.repo, "ci-run-7")
    assert env_key != seeded.sb.public_key(seeded.repo)


def test_environment_secret_of_a_missing_environment_is_404(seeded: Seeded) -> None:
    answer = seeded.api(
        "GET", "/repos/octo/app/environments/nowhere/secrets/public-key", seeded.token()
    )
    assert answer.status_code == 404


def test_environment_secret_sealed_to_the_repository_key_is_refused(seeded: Seeded) -> None:
    token = seeded.token()
    seeded.github(token).get_repo("octo/app").create_environment("prod")
    answer = seeded.api(
        "PUT", "/repos/octo/app/environments/prod/secrets/X", token, json=_sealed_body(seeded, "v")
    )
    assert answer.status_code == 422


def test_organization_secrets(seeded: Seeded) -> None:
    token = seeded.sb.create_installation_token(seeded.installation)
    refused = seeded.api("GET", "/orgs/octo/actions/secrets/public-key", token)
    assert refused.status_code == 403  # the installation lacks "organization_secrets"
    org_app = seeded.sb.add_app()
    installation = seeded.sb.install(
        org_app, [seeded.repo], {"organization_secrets": "write", "metadata": "read"}
    )
    token = seeded.sb.create_installation_token(installation)
    key = seeded.api("GET", "/orgs/octo/actions/secrets/public-key", token).json()
    body = {"encrypted_value": seal(key["key"], "org value"), "key_id": key["key_id"]}
    missing_visibility = seeded.api("PUT", "/orgs/octo/actions/secrets/SHARED", token, json=body)
    assert missing_visibility.status_code == 422
    body["visibility"] = "private"
    assert (
        seeded.api("PUT", "/orgs/octo/actions/secrets/SHARED", token, json=body).status_code == 201
    )
    assert seeded.sb.org_secret_value("octo", "shared") == "org value"
    assert seeded.api("DELETE", "/orgs/octo/actions/secrets/SHARED", token).status_code == 204
    assert seeded.api("DELETE", "/orgs/octo/actions/secrets/SHARED", token).status_code == 404
    assert seeded.api("GET", "/orgs/elsewhere/actions/secrets/public-key", token).status_code == 404


def test_pygithub_raises_on_refusals(seeded: Seeded) -> None:
    repo = seeded.github().get_repo("octo/app")
    with pytest.raises(GithubException) as refused:
        repo.create_secret("GITHUB_X", "v")
    assert refused.value.status == 422
