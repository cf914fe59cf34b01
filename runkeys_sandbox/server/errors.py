"""GitHub's error answers: `{"message": …, "documentation_url": …, "status": "<code>"}`.

Messages are GitHub's own where they are known (quoted from recorded answers and issue reports);
the few that are not are marked where they are raised.
"""

from __future__ import annotations

from typing import Any

DOCS = "https://docs.github.com/rest"

NOT_FOUND = "Not Found"
BAD_CREDENTIALS = "Bad credentials"
REQUIRES_AUTH = "Requires authentication"
NOT_ACCESSIBLE_INTEGRATION = "Resource not accessible by integration"
NOT_ACCESSIBLE_PAT = "Resource not accessible by personal access token"
PROBLEMS_PARSING_JSON = "Problems parsing JSON"
SECONDARY_RATE_LIMIT = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {request_id}."
)
SECONDARY_RATE_LIMIT_DOCS = (
    "https://docs.github.com/free-pro-team@latest/rest/overview/"
    "rate-limits-for-the-rest-api#about-secondary-rate-limits"
)
PRIMARY_RATE_LIMIT_DOCS = (
    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
    "#about-the-primary-rate-limit"
)


class ApiError(Exception):
    """An answer GitHub would give instead of the resource: raised by handlers, rendered by the
    application as JSON with the status code."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        documentation_url: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.documentation_url = documentation_url
        self.errors = errors
        self.headers = dict(headers or {})

    def body(self, default_docs: str) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        body["documentation_url"] = self.documentation_url or default_docs
        body["status"] = str(self.status)
        return body


def not_found() -> ApiError:
    return ApiError(404, NOT_FOUND)


def validation_failed(resource: str, field: str, message: str, code: str = "custom") -> ApiError:
    """GitHub's 422 with an `errors` list, as for deploy keys."""
    return ApiError(
        422,
        "Validation Failed",
        errors=[{"resource": resource, "code": code, "field": field, "message": message}],
    )
