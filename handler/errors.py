"""The API's one error shape: `{"error": "<code>", "message": "<text safe to show>"}`.

Messages are written here or come from `RunkeysError.cause`; none quotes a token, a signature
or a request header.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}

    def response(self) -> Response:
        body: dict[str, Any] = {"error": self.code, "message": self.message, **self.extra}
        response = jsonify(body)
        response.status_code = self.status
        if self.code in ("missing_token", "invalid_token"):
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response


def error_response(status: int, code: str, message: str) -> Response:
    return ApiError(status, code, message).response()
