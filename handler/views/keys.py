"""`POST /v1/keys` and `POST /v1/keys/retire`: broker mode (handler.broker), on the `/v1`
blueprint so that the same checks run first: a body within the API's limit, a verified OIDC
token accepted once, the App installed on the token's repository. Imported by `handler.app`
before it registers the blueprint."""

from __future__ import annotations

from flask import Response

from handler import broker
from handler.errors import ApiError
from handler.views import current_service
from handler.views.leases import _answer, _json, blueprint, caller


@blueprint.post("/v1/keys")
def grant_keys() -> Response:
    service = current_service()
    if service.policy is None:  # before the body is read: nothing to check it against
        raise ApiError(404, "broker_off", broker.BROKER_OFF)
    found = caller()
    granted = broker.grant(service, found.identity, found.installation_id, _json())
    answer = _answer(granted, 201)
    answer.headers["Cache-Control"] = "no-store"  # sealed, yet no proxy need keep a copy
    return answer


@blueprint.post("/v1/keys/retire")
def retire_keys() -> Response:
    """The post step asks the service to retire its request's keys (it holds no connection)."""
    # Served even with the policy gone since the keys were granted: retiring mints nothing.
    found = caller()
    return _answer(broker.retire(current_service(), found.identity, _json()))
