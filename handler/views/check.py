"""`POST /v1/leases/check`: the `check` sub-action's expiry preflight (handler.preflight), on
the `/v1` blueprint so that the same checks run first: a body within the API's limit, a
verified OIDC token accepted once, the App installed on the token's repository. Imported by
`handler.app` before it registers the blueprint."""

from __future__ import annotations

import msgspec
from flask import Response

from handler import preflight
from handler.errors import ApiError
from handler.logs import event
from handler.views import current_service
from handler.views.leases import _answer, _json, blueprint, caller, log
from runkeys.preflight import CheckAnswer, CheckRequest
from runkeys.scrub import short


def _decode(data: bytes) -> CheckRequest:
    """The body in the schema (`runkeys.preflight`), or a 400 naming the field that is not."""
    try:
        body = msgspec.json.decode(data, type=CheckRequest)
    except msgspec.ValidationError as exc:
        raise ApiError(
            400, "invalid_request", f"The body is malformed: {short(str(exc), 300)}"
        ) from None
    except msgspec.DecodeError:
        raise ApiError(400, "invalid_request", "The body is not JSON") from None
    names = [key.name for key in body.keys]
    if len(set(names)) != len(names):
        raise ApiError(400, "invalid_request", "A key name appears twice in the request")
    return body


@blueprint.post("/v1/leases/check")
def check_keys() -> Response:
    service = current_service()
    identity = caller().identity
    body = _decode(_json())
    now = service.clock()
    with service.ledger.begin() as conn:
        answers = preflight.check(conn, identity, body.keys, now=now)
    event(
        log,
        "keys checked",
        repository=identity.repository,
        run_id=identity.run_id,
        run_attempt=identity.run_attempt,
        keys={answer.name: answer.status.value for answer in answers},
    )
    return _answer(CheckAnswer(now=now, keys=answers))
