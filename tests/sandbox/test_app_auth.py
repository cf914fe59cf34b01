"""GitHub App authentication: App JWTs, installations, installation tokens (narrowed, expired,
revoked), and refusals of repositories and permissions as GitHub refuses them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from github import Auth, Github, GithubException, GithubIntegration

from runkeys.errors import GitHubError
from runkeys.github.session import AppCredentials, GitHubConfig, GitHubSession
from tests.sandbox.conftest import Seeded

EXPIRED = (
    "'Expiration time' claim ('exp') must be a numeric value representing the future time at "
    "which the assertion expires"
)


def app_jwt(seeded: Seeded, *, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iat": now - 60, "exp": now + 540, "iss": str(seeded.app.id), **claims}
    return signed_jwt(payload, key or seeded.app.private_key)


def signed_jwt(payload: dict[str, Any], key: rsa.RSAPrivateKey, alg: str = "RS256") -> str:
    """A JWT made by hand (PyJWT refuses to encode some of the claims these tests need)."""
    header = {"alg": alg, "typ": "JWT"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if alg == "none":
        return f"{signing_input}."
    if alg == "HS256":  # the App's public key used as an HMAC secret (algorithm confusion)
        secret = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    else:
        signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def integration(seeded: Seeded) -> GithubIntegration:
    auth = Auth.AppAuth(seeded.app.id, seeded.app.private_key_pem)
    return GithubIntegration(
        base_url=seeded.sb.url,
        auth=auth,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


def test_pygithub_integration_calls(seeded: Seeded) -> None:
    gi = integration(seeded)
    assert gi.get_repo_installation("octo", "app").id == seeded.installation.id
    assert gi.get_app_installation(seeded.installation.id).app_id == seeded.app.id
    assert gi.get_app().slug == seeded.app.slug
    asked = int(time.time())  # GitHub's expiry is in whole seconds
    granted = gi.get_access_token(seeded.installation.id, permissions={"secrets": "read"})
    answered = time.time()
    assert granted.permissions == {"secrets": "read", "metadata": "read"}
    assert granted.token.startswith("ghs_")
    # An hour from when it was granted, however long the call took.
    assert asked + 3600 <= granted.expires_at.timestamp() <= answered + 3600


def test_installation_auth_drives_pygithub(seeded: Seeded) -> None:
    auth = Auth.AppAuth(seeded.app.id, seeded.app.private_key_pem).get_installation_auth(
        seeded.installation.id
    )
    gh = Github(
        base_url=seeded.sb.url,
        auth=auth,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    gh.get_repo("octo/app").create_secret("FROM_APP", "v")
    assert seeded.sb.secret_value(seeded.repo, "FROM_APP") == "v"


def test_token_values_are_opaque_and_vary_in_length(seeded: Seeded) -> None:
    lengths = {len(seeded.token()) for _ in range(20)}
    assert len(lengths) > 1
    assert min(lengths) >= 40


def test_narrowed_tokens(seeded: Seeded) -> None:
    lib = seeded.sb.add_repository("octo/lib")
    seeded.sb.update_installation(seeded.installation, repositories=[seeded.repo, lib])
    installation = seeded.installation
    gi = integration(seeded)
    path = f"/app/installations/{installation.id}/access_tokens"
    _, by_name = gi.requester.requestJsonAndCheck("POST", path, input={"repositories": ["lib"]})
    assert by_name["repository_selection"] == "selected"
    assert [r["full_name"] for r in by_name["repositories"]] == ["octo/lib"]
    _, by_id = gi.requester.requestJsonAndCheck(
        "POST", path, input={"repository_ids": [seeded.repo.id]}
    )
    narrowed = by_name["token"]
    assert seeded.api("GET", "/repos/octo/lib/actions/secrets", narrowed).status_code == 200
    hidden = seeded.api("GET", "/repos/octo/app/actions/secrets", narrowed)
    assert (hidden.status_code, hidden.json()["message"]) == (404, "Not Found")
    assert seeded.api("GET", "/repos/octo/lib/actions/secrets", by_id["token"]).status_code == 404


def test_token_requests_beyond_the_installation_are_422(seeded: Seeded) -> None:
    gi = integration(seeded)
    with pytest.raises(GithubException) as info:
        gi.get_access_token(seeded.installation.id, permissions={"test-permissions": "read"})
    assert (info.value.status, info.value.data["message"]) == (
        422,
        "The permissions requested are not granted to this installation.",
    )
    too_much: list[dict[str, object]] = [
        {"permissions": {"actions": "write"}},
        {"permissions": {"secrets": "admin"}},
    ]
    for body in too_much:
        answer = seeded.api(
            "POST",
            f"/app/installations/{seeded.installation.id}/access_tokens",
            app_jwt(seeded),
            json=body,
        )
        assert answer.status_code == 422
    seeded.sb.add_repository("octo/uninstalled")
    outside: list[dict[str, object]] = [
        {"repositories": ["uninstalled"]},
        {"repository_ids": [1]},
        {"repositories": ["octo/app"]},  # a name, not owner/name
    ]
    for body in outside:
        answer = seeded.api(
            "POST",
            f"/app/installations/{seeded.installation.id}/access_tokens",
            app_jwt(seeded),
            json=body,
        )
        assert answer.status_code == 422
        assert answer.json()["message"].startswith("There is at least one repository")


def test_unknown_installations_and_repositories_are_404(seeded: Seeded) -> None:
    token = app_jwt(seeded)
    assert seeded.api("POST", "/app/installations/1/access_tokens", token).status_code == 404
    assert seeded.api("GET", "/repos/octo/nope/installation", token).status_code == 404
    seeded.sb.add_repository("octo/uninstalled")
    assert seeded.api("GET", "/repos/octo/uninstalled/installation", token).status_code == 404
    other = seeded.sb.add_app()
    other_jwt = signed_jwt(
        {"iat": int(time.time()) - 60, "exp": int(time.time()) + 500, "iss": other.id},
        other.private_key,
    )
    assert (
        seeded.api("GET", f"/app/installations/{seeded.installation.id}", other_jwt).status_code
        == 404
    )


class Ago(int):
    """A time claim given relative to when the test runs (not to when pytest collected it: a
    loaded machine can take minutes between the two)."""


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": Ago(-10)}, EXPIRED),
        (
            {"iat": Ago(0), "exp": Ago(700)},
            "'Expiration time' claim ('exp') is too far in the future",
        ),
        (
            {"iat": Ago(300), "exp": Ago(500)},
            "'Issued at' claim ('iat') must be an Integer",
        ),
        ({"iss": "999999999"}, "Integration not found"),
        ({"iss": "not-a-number"}, "'Issuer' claim ('iss') must be an Integer"),
        ({"exp": "soon"}, EXPIRED),
    ],
)
def test_jwt_claim_checks(seeded: Seeded, claims: dict[str, Any], message: str) -> None:
    now = int(time.time())
    resolved: dict[str, Any] = {k: now + v if isinstance(v, Ago) else v for k, v in claims.items()}
    answer = seeded.api("GET", "/app", app_jwt(seeded, **resolved))
    assert answer.status_code == 401
    assert answer.json()["message"].startswith(message)


def test_jwt_iss_may_be_a_number(seeded: Seeded) -> None:
    assert seeded.api("GET", "/app", app_jwt(seeded, iss=seeded.app.id)).status_code == 200


def test_forged_jwts_do_not_decode(seeded: Seeded) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"iat": now - 60, "exp": now + 500, "iss": str(seeded.app.id)}
    valid = app_jwt(seeded)
    forged = [
        app_jwt(seeded, key=stranger),  # signed with another key
        signed_jwt(claims, seeded.app.private_key, "none"),
        signed_jwt(claims, seeded.app.private_key, "HS256"),
        valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB"),  # a tampered signature
        "eyJhbGciOiJSUzI1NiJ9.garbage.garbage",
    ]
    for token in forged:
        answer = seeded.api(
            "POST", f"/app/installations/{seeded.installation.id}/access_tokens", token
        )
        assert answer.status_code == 401, token
        assert answer.json()["message"] == "A JSON web token could not be decoded"


def test_credentials_in_the_wrong_place(seeded: Seeded) -> None:
    token = seeded.token()
    assert (
        seeded.api("GET", "/app", token).json()["message"]
        == "A JSON web token could not be decoded"
    )
    assert seeded.api("GET", "/app").json()["message"] == "Requires authentication"
    on_repo = seeded.api("GET", "/repos/octo/app/actions/secrets", app_jwt(seeded))
    assert (on_repo.status_code, on_repo.json()["message"]) == (
        403,
        "Resource not accessible by integration",
    )
    anonymous = seeded.api("GET", "/repos/octo/app/actions/secrets")
    assert (anonymous.status_code, anonymous.json()["message"]) == (401, "Requires authentication")
    unknown = seeded.api("GET", "/repos/octo/app/actions/secrets", "ghs_" + "x" * 36)
    assert (unknown.status_code, unknown.json()["message"]) == (401, "Bad credentials")
    weird = seeded.api("GET", "/rate_limit", headers={"Authorization": "Basic abc"})
    assert weird.status_code == 401


def test_expired_and_revoked_tokens_are_401(seeded: Seeded) -> None:
    expiring, revoked = seeded.token(), seeded.token()
    assert seeded.api("DELETE", "/installation/token", revoked).status_code == 204
    assert (
        seeded.api("GET", "/repos/octo/app/actions/secrets", revoked).json()["message"]
        == "Bad credentials"
    )
    assert seeded.api("DELETE", "/installation/token", revoked).status_code == 401
    seeded.sb.advance_clock(3599)
    assert seeded.api("GET", "/repos/octo/app/actions/secrets", expiring).status_code == 200
    seeded.sb.advance_clock(2)
    assert seeded.api("GET", "/repos/octo/app/actions/secrets", expiring).status_code == 401
    assert not seeded.sb.token_is_live(expiring)


def test_the_app_jwt_expires_with_the_sandbox_clock(seeded: Seeded) -> None:
    token = app_jwt(seeded)
    seeded.sb.advance_clock(600)
    assert seeded.api("GET", "/app", token).json()["message"] == EXPIRED


def test_permission_refusals(seeded: Seeded) -> None:
    read_only = seeded.token(permissions={"secrets": "read"})
    assert seeded.api("GET", "/repos/octo/app/actions/secrets", read_only).status_code == 200
    refused = seeded.api("DELETE", "/repos/octo/app/actions/secrets/X", read_only)
    assert (refused.status_code, refused.json()["message"]) == (
        403,
        "Resource not accessible by integration",
    )
    # Environment secrets need Secrets *and* Environments.
    seeded.api("PUT", "/repos/octo/app/environments/prod", seeded.token())
    secrets_only = seeded.token(permissions={"secrets": "write"})
    env_key = seeded.api(
        "GET", "/repos/octo/app/environments/prod/secrets/public-key", secrets_only
    )
    assert env_key.status_code == 403
    assert env_key.headers["X-Accepted-GitHub-Permissions"] == "secrets=read,environments=read"


def test_workflow_token_cannot_touch_secrets(seeded: Seeded) -> None:
    token = seeded.sb.workflow_token(seeded.repo)
    refused = seeded.api("GET", "/repos/octo/app/actions/secrets/public-key", token)
    assert (refused.status_code, refused.json()["message"]) == (
        403,
        "Resource not accessible by integration",
    )
    assert seeded.api("PUT", "/repos/octo/app/environments/x", token).status_code == 403
    seeded.sb.add_workflow_run(seeded.repo, run_id=5)
    assert seeded.api("GET", "/repos/octo/app/actions/runs/5", token).status_code == 200
    other = seeded.sb.add_repository("octo/other")
    assert seeded.api("GET", f"/repos/{other.full_name}/actions/runs", token).status_code == 404
    assert seeded.api("DELETE", "/installation/token", token).status_code == 204


def test_pat_like_tokens(seeded: Seeded) -> None:
    pat = seeded.sb.add_token([seeded.repo], {"secrets": "read"})
    assert pat.startswith("github_pat_")
    assert seeded.api("GET", "/repos/octo/app/actions/secrets", pat).status_code == 200
    refused = seeded.api("DELETE", "/repos/octo/app/actions/secrets/X", pat)
    assert refused.json()["message"] == "Resource not accessible by personal access token"
    assert seeded.api("DELETE", "/installation/token", pat).status_code == 403
    short = seeded.sb.add_token(None, {"secrets": "read"}, expires_in=10)
    seeded.sb.advance_clock(11)
    assert seeded.api("GET", "/repos/octo/app/actions/secrets", short).status_code == 401


def test_suspended_and_removed_installations(seeded: Seeded) -> None:
    token = seeded.token()
    seeded.sb.suspend(seeded.installation)
    answer = seeded.api(
        "POST", f"/app/installations/{seeded.installation.id}/access_tokens", app_jwt(seeded)
    )
    assert answer.status_code == 403
    seeded.sb.suspend(seeded.installation, False)
    seeded.sb.uninstall(seeded.installation)
    assert seeded.api("GET", "/repos/octo/app/actions/secrets", token).status_code == 401
    assert seeded.api("GET", "/repos/octo/app/installation", app_jwt(seeded)).status_code == 404


def test_runkeys_github_session_against_the_sandbox(seeded: Seeded) -> None:
    config = GitHubConfig(
        api_url=seeded.sb.url, app=AppCredentials(str(seeded.app.id), seeded.app.private_key_pem)
    )
    session = GitHubSession(config, permissions={"secrets": "write", "metadata": "read"})
    assert session.installation_id("octo/app") == seeded.installation.id
    session.repository("octo/app").create_secret("VIA_SESSION", "v")
    assert seeded.sb.secret_value(seeded.repo, "VIA_SESSION") == "v"
    granted = session.create_installation_token(seeded.installation.id, repositories=["app"])
    assert granted.repositories == ("octo/app",)
    session.revoke_installation_token(granted.token)
    assert not seeded.sb.token_is_live(granted.token)
    session.revoke_installation_token(granted.token)  # gone already: success
    with pytest.raises(GitHubError) as info:
        session.create_installation_token(seeded.installation.id, permissions={"actions": "write"})
    assert info.value.status == 422


def test_installation_listings(seeded: Seeded) -> None:
    gi = integration(seeded)
    assert [i.id for i in gi.get_installations()] == [seeded.installation.id]
    assert gi.get_org_installation("octo").id == seeded.installation.id
    user_repo = seeded.sb.add_repository("someone/dotfiles", owner_type="User")
    user_installation = seeded.sb.install(seeded.app, [user_repo])
    assert gi.get_user_installation("someone").id == user_installation.id
    with pytest.raises(GithubException) as info:
        gi.get_org_installation("someone")  # a user, not an organization
    assert info.value.status == 404
    lib = seeded.sb.add_repository("octo/lib")
    seeded.sb.update_installation(seeded.installation, repositories=[seeded.repo, lib])
    narrowed = seeded.token(repositories=[lib])
    listed = seeded.api("GET", "/installation/repositories", narrowed).json()
    assert (listed["total_count"], listed["repository_selection"]) == (1, "selected")
    assert [r["full_name"] for r in listed["repositories"]] == ["octo/lib"]
    assert seeded.api("GET", "/installation/repositories", app_jwt(seeded)).status_code == 403
