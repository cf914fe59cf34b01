"""`POST /v1/keys`: broker mode (handler.broker), behind the same checks as `/v1/leases`: a
body within the API's limit, a verified OIDC token accepted once, the App installed on the
token's repository."""

from __future__ import annotations

from flask import Blueprint, Response

from handler import broker
from handler.errors import ApiError
from handler.views import current_service
from handler.views.leases import _answer, _caller, _json, caller

blueprint = Blueprint("keys", __name__)
blueprint.before_request(_caller)


@blueprint.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return exc.response()


@blueprint.post("/v1/keys")
def grant_keys() -> Response:
    service = current_service()
    if service.policy is None:  # before the body is read: nothing to check it against
        raise ApiError(404, "broker_off", broker.BROKER_OFF)
    found = caller()
    granted = broker.grant(service, found.identity, found.installation_id, _json())
    return _answer(granted, 201)
