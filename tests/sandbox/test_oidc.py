"""The Actions OIDC issuer: the runner's token endpoint as a job calls it, and verification with
PyJWT against the served discovery document and JWKS."""

from __future__ import annotations

import urllib.parse

import jwt
import pytest
import requests

from runkeys_sandbox.server import RunClaims
from runkeys_sandbox.server.sandbox import Sandbox
from tests.sandbox.conftest import Seeded


def fetch_id_token(env: dict[str, str], audience: str | None = None) -> requests.Response:
    """What actions/toolkit's `getIDToken` does: GET URL + `&audience=`, bearer request token."""
    url = env["ACTIONS_ID_TOKEN_REQUEST_URL"]
    if audience is not None:
        url += "&audience=" + urllib.parse.quote(audience, safe="")
    headers = {"Authorization": f"Bearer {env['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"}
    return requests.get(url, headers=headers, timeout=10)


def verify(sb: Sandbox, token: str, audience: str) -> dict[str, object]:
    discovery = requests.get(
        f"{sb.oidc_issuer_url}/.well-known/openid-configuration", timeout=10
    ).json()
    assert discovery["issuer"] == sb.oidc_issuer_url
    signing_key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        signing_key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=discovery["issuer"],
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "jti", "sub"]},
    )


def test_runner_token_endpoint_and_jwks(seeded: Seeded) -> None:
    sb = seeded.sb
    run = sb.add_workflow_run(seeded.repo, run_attempt=2)
    claims = sb.run_claims(seeded.repo, run, environment="ci-run")
    env = sb.runner_oidc_env(claims)
    assert "?api-version=" in env["ACTIONS_ID_TOKEN_REQUEST_URL"]
    answer = fetch_id_token(env, "https://runkeys.example/leases")
    assert answer.status_code == 200
    verified = verify(sb, answer.json()["value"], "https://runkeys.example/leases")
    assert verified["repository"] == "octo/app"
    assert verified["repository_id"] == str(seeded.repo.id)
    assert (verified["run_id"], verified["run_attempt"]) == (str(run.id), "2")
    assert verified["environment"] == "ci-run"
    assert verified["sub"] == "repo:octo/app:environment:ci-run"


def test_default_audience_is_the_owner_url(sandbox: Sandbox) -> None:
    claims = RunClaims(repository="octo-org/app", repository_id=1, run_id=2)
    token = fetch_id_token(sandbox.runner_oidc_env(claims)).json()["value"]
    assert (
        verify(sandbox, token, "https://github.com/octo-org")["aud"]
        == "https://github.com/octo-org"
    )


def test_wrong_or_missing_request_token_is_401(sandbox: Sandbox) -> None:
    claims = RunClaims(repository="octo/app", repository_id=1, run_id=2)
    env = sandbox.runner_oidc_env(claims)
    other = sandbox.runner_oidc_env(claims)
    url = env["ACTIONS_ID_TOKEN_REQUEST_URL"]
    assert requests.get(url, timeout=5).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert requests.get(url, headers=wrong, timeout=5).status_code == 401
    # A request token works only at the URL it was handed out with.
    swapped = {"Authorization": f"Bearer {other['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"}
    assert requests.get(url, headers=swapped, timeout=5).status_code == 401


def test_tokens_signed_elsewhere_fail_verification(sandbox: Sandbox) -> None:
    claims = RunClaims(repository="octo/app", repository_id=1, run_id=2)
    good = sandbox.oidc_token(claims, "aud")
    assert verify(sandbox, good, "aud")["run_id"] == "2"
    with Sandbox() as other:
        foreign = other.oidc_token(claims, "aud", iss=sandbox.oidc_issuer_url)
        with pytest.raises(jwt.PyJWKClientError):
            verify(sandbox, foreign, "aud")  # its kid is not in this issuer's JWKS
    expired = sandbox.oidc_token(claims, "aud", exp=1)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(sandbox, expired, "aud")


def test_oidc_subject_customization_endpoint(seeded: Seeded) -> None:
    token = seeded.token()
    path = "/repos/octo/app/actions/oidc/customization/sub"
    assert seeded.api("GET", path, token).json() == {"use_default": True}
    seeded.sb.set_oidc_subject_claims(seeded.repo, ["repo", "context"])
    assert seeded.api("GET", path, token).json() == {
        "use_default": False,
        "include_claim_keys": ["repo", "context"],
    }
