"""The Actions OIDC issuer, served GHES-style under `{sandbox}/_services/token`: discovery, JWKS,
and the runner's token endpoint a job calls with `ACTIONS_ID_TOKEN_REQUEST_URL` +
`&audience=…` and `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`
(https://docs.github.com/actions/reference/security/oidc)."""

from __future__ import annotations

import hmac

from runkeys_sandbox.server.errors import ApiError
from runkeys_sandbox.server.oidc import OIDCIssuer
from runkeys_sandbox.server.routing import OIDC, Call, Reply, Route

ISSUER_PATH = "/_services/token"
RUNNER_PATH = (
    "/_services/pipelines/_apis/distributedtask/hubs/Actions/plans/{plan}/jobs/{job}/idtoken"
)
API_VERSION = "2.0"
UNAUTHORIZED = "The request token is missing, unknown, or not for this job"


def _issuer(call: Call) -> OIDCIssuer:
    return call.world.oidc()


def discovery(call: Call) -> Reply:
    return Reply(200, _issuer(call).discovery())


def jwks(call: Call) -> Reply:
    return Reply(200, _issuer(call).jwks())


def runner_token(call: Call) -> Reply:
    """`{"value": <JWT>}` for the job the request token was handed to."""
    scheme, _, presented = call.headers.get("authorization", "").partition(" ")
    job = f"{call.params['plan']}/{call.params['job']}"
    claims = None
    for token, (bound_job, run) in call.world.oidc_requests.items():
        if hmac.compare_digest(token, presented.strip()) and bound_job == job:
            claims = run
    if scheme.lower() != "bearer" or claims is None:
        raise ApiError(401, UNAUTHORIZED)
    audience = call.arg("audience") or f"https://github.com/{claims.owner}"
    value = _issuer(call).token_for(claims, audience, now=int(call.now))
    return Reply(200, {"value": value})


ROUTES = (
    Route("GET", f"{ISSUER_PATH}/.well-known/openid-configuration", discovery, OIDC),
    Route("GET", f"{ISSUER_PATH}/.well-known/jwks", jwks, OIDC),
    Route("GET", RUNNER_PATH, runner_token, OIDC),
)
