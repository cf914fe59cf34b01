"""The faithfulness check itself: it sees every exchange, and it catches what it should."""

from __future__ import annotations

from typing import Any

import requests

from runkeys_sandbox.server import RecordedRequest
from runkeys_sandbox.server.sandbox import Sandbox
from tests.openapi.plugin import FaithfulnessCheck
from tests.openapi.validator import operations, problems

SECRET_PUT = "PUT /repos/{owner}/{repo}/actions/secrets/{secret_name}"
KEY_GET = "GET /repos/{owner}/{repo}/actions/secrets/public-key"


def exchange(
    operation: str | None, status: int, response: Any, request: str | None = None
) -> RecordedRequest:
    method = operation.split()[0] if operation else "GET"
    return RecordedRequest(
        method=method,
        path="/repos/octo/app/actions/secrets/X",
        query={},
        status=status,
        request_body=request,
        response_body=response,
        operation=operation,
    )


def test_every_fragment_is_loaded() -> None:
    ops = operations()
    assert SECRET_PUT in ops
    assert "POST /app/installations/{installation_id}/access_tokens" in ops
    assert len(ops) == 44  # 39 fragments + 5 operations checked with the description's schemas


def test_faithful_exchanges_pass() -> None:
    assert (
        problems(exchange(SECRET_PUT, 201, {}, '{"encrypted_value": "c2VjcmV0", "key_id": "1"}'))
        == []
    )
    assert (
        problems(exchange(SECRET_PUT, 204, None, '{"encrypted_value": "c2VjcmV0", "key_id": "1"}'))
        == []
    )
    assert problems(exchange(KEY_GET, 200, {"key_id": "1", "key": "abc="})) == []
    assert (
        problems(exchange(KEY_GET, 404, {"message": "Not Found", "documentation_url": "x"})) == []
    )


def test_accepting_a_body_the_description_rejects_is_caught() -> None:
    found = problems(exchange(SECRET_PUT, 201, {}, '{"encrypted_value": "not base64!"}'))
    assert any("key_id" in p for p in found)
    assert any("does not match" in p for p in found)
    # Refusing it is what GitHub does.
    refusal = {"message": "Invalid request.", "documentation_url": "x"}
    assert problems(exchange(SECRET_PUT, 422, refusal, '{"encrypted_value": "x"}')) == []


ALERT = "GET /repos/{owner}/{repo}/secret-scanning/alerts/{alert_number}"
ALERT_UPDATE = "PATCH /repos/{owner}/{repo}/secret-scanning/alerts/{alert_number}"


def test_a_nullable_enum_takes_null_and_nothing_else_outside_it() -> None:
    """GitHub answers `"resolution": null` for an open alert, though its description lists no
    null in the enum it marks nullable; any other value outside the enum is still caught."""
    assert problems(exchange(ALERT, 200, {"number": 1, "resolution": None})) == []
    assert problems(exchange(ALERT, 200, {"number": 1, "resolution": "revoked"})) == []
    assert problems(exchange(ALERT, 200, {"number": 1, "resolution": "revokeD"}))


def test_an_error_documented_without_a_body_may_carry_githubs_error() -> None:
    refusal = {"message": "Resource not accessible by integration", "documentation_url": "x"}
    assert problems(exchange(ALERT_UPDATE, 403, refusal, '{"state": "open"}')) == []
    assert problems(exchange(ALERT_UPDATE, 403, {"error": "no"}, '{"state": "open"}'))


def test_unfaithful_answers_are_caught() -> None:
    assert problems(exchange(KEY_GET, 200, {"key": "abc="}))  # key_id is required
    assert problems(exchange(KEY_GET, 200, {"key_id": 1, "key": "abc="}))  # a string on GitHub
    assert problems(exchange(SECRET_PUT, 200, {}, '{"encrypted_value": "c2VjcmV0", "key_id": "1"}'))
    assert problems(
        exchange(
            SECRET_PUT, 204, {"unexpected": True}, '{"encrypted_value": "c2VjcmV0", "key_id": "1"}'
        )
    )
    assert problems(exchange(KEY_GET, 403, {"error": "no"}))  # not GitHub's error shape
    assert problems(exchange("GET /made/up", 200, {}))
    assert problems(exchange(None, 200, {}))  # an unknown path must be 404
    bug = RecordedRequest("GET", "/x", {}, 500, None, {}, unexpected_error="KeyError: 'x'")
    assert problems(bug) == ["GET /x → 500: sandbox bug: KeyError: 'x'"]


def test_the_suite_checks_every_sandbox_exchange(
    sandbox: Sandbox, openapi_check: FaithfulnessCheck
) -> None:
    before = openapi_check.checked
    requests.get(f"{sandbox.url}/rate_limit", timeout=5)
    requests.get(f"{sandbox.url}/nothing/here", timeout=5)
    assert openapi_check.checked == before + 2
