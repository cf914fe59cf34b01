"""Is the sandbox faithful to GitHub's REST description? Each exchange the sandbox recorded is
checked against the fragment of its operation (copied from the description, `tests/github/openapi`):

- the operation exists in the description (the sandbox serves nothing GitHub does not);
- a request body the description rejects was not accepted (no 2xx);
- the response body matches the schema of its status; a status the operation does not document
  is an error with GitHub's error shape; 204s are empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator

from runkeys_sandbox.server.recording import RecordedRequest
from tests.github_data import openapi_fragment, openapi_fragments


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"content": {"application/json": {"schema": schema}}}}


_REPOSITORY = {"$ref": "#/components/schemas/repository"}
_INSTALLATION = {"$ref": "#/components/schemas/installation"}
# Served by the sandbox though no fragment describes them (PyGithub calls them), checked with
# the description's own component schemas, taken from a fragment that carries them.
EXTRA_OPERATIONS = {
    "GET /repos/{owner}/{repo}": ("apps_create-installation-access-token.json", _json(_REPOSITORY)),
    "GET /app/installations": (
        "apps_get-installation.json",
        _json({"type": "array", "items": _INSTALLATION}),
    ),
    "GET /orgs/{org}/installation": ("apps_get-installation.json", _json(_INSTALLATION)),
    "GET /users/{username}/installation": ("apps_get-installation.json", _json(_INSTALLATION)),
    "GET /installation/repositories": (
        "apps_create-installation-access-token.json",
        _json(
            {
                "type": "object",
                "required": ["total_count", "repositories"],
                "properties": {
                    "total_count": {"type": "integer"},
                    "repositories": {"type": "array", "items": _REPOSITORY},
                    "repository_selection": {"type": "string"},
                },
            }
        ),
    ),
}
# Not the REST API: the Actions OIDC issuer and the runner's token endpoint, and the stand-in's
# own control API (runkeys_sandbox/server/control.py).
NOT_REST = ("/_services/", "/_sandbox/")


@dataclass(frozen=True)
class Operation:
    key: str  # "PUT /repos/{owner}/{repo}/actions/secrets/{secret_name}"
    operation: dict[str, Any]
    components: dict[str, Any]

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            *_, section, name = node["$ref"].split("/")
            node = self.components[section][name]
        return node

    def request_schema(self) -> dict[str, Any] | None:
        body = self.operation.get("requestBody")
        if not body:
            return None
        return self.resolve(body)["content"]["application/json"]["schema"]  # type: ignore[no-any-return]

    def response(self, status: int) -> dict[str, Any] | None:
        spec = self.operation["responses"].get(str(status))
        return None if spec is None else self.resolve(spec)


@cache
def operations() -> dict[str, Operation]:
    found: dict[str, Operation] = {}
    for fragment in openapi_fragments():
        key = f"{fragment['method'].upper()} {fragment['path']}"
        found[key] = Operation(key, fragment["operation"], fragment["components"])
    for key, (source, responses) in EXTRA_OPERATIONS.items():
        components = openapi_fragment(source)["components"]
        found[key] = Operation(key, {"responses": responses}, components)
    return found


def schema_errors(op: Operation, schema: dict[str, Any], value: Any, *, request: bool) -> list[str]:
    root = {**schema, "components": op.components}  # `#/components/...` resolve within the root
    validator_class = OAS30WriteValidator if request else OAS30ReadValidator
    validator = validator_class(root, format_checker=validator_class.FORMAT_CHECKER)
    return [_describe(e) for e in validator.iter_errors(value) if not _nullable_enum(e)]


def _nullable_enum(error: Any) -> bool:
    """A null refused by an enum marked `nullable` that does not list null: OpenAPI 3.0.3 asks
    for null in the list, GitHub's description leaves it out, and its own examples answer null
    (`secret-scanning-alert-resolution` of an open alert)."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    return error.validator == "enum" and error.instance is None and bool(schema.get("nullable"))


def _describe(error: Any) -> str:  # a jsonschema ValidationError
    where = "/".join(str(p) for p in error.absolute_path) or "(body)"
    return f"{where}: {error.message[:300]}"


def problems(rec: RecordedRequest) -> list[str]:
    """What is wrong with one exchange, as lines naming it."""
    label = f"{rec.method} {rec.path} → {rec.status}"
    if rec.unexpected_error:
        return [f"{label}: sandbox bug: {rec.unexpected_error}"]
    if rec.path.startswith(NOT_REST) and not rec.injected:
        return []
    found = _error_shape(rec) if rec.status >= 400 else []
    if rec.injected:
        return [f"{label}: {p}" for p in found]
    if rec.operation is None:
        if rec.status != 404:
            found.append("no operation matched, yet the answer was not 404")
        return [f"{label}: {p}" for p in found]
    op = operations().get(rec.operation)
    if op is None:
        return [f"{label}: {rec.operation} is not in the OpenAPI fragments"]
    found += _request_problems(op, rec) + _response_problems(op, rec)
    return [f"{label}: {p}" for p in found]


def _error_shape(rec: RecordedRequest) -> list[str]:
    body = rec.response_body
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return [f"an error without GitHub's `message`: {body!r}"[:300]]
    if not isinstance(body.get("documentation_url"), str):
        return ["an error without GitHub's `documentation_url`"]
    return []


def _request_problems(op: Operation, rec: RecordedRequest) -> list[str]:
    schema = op.request_schema()
    if schema is None or not 200 <= rec.status < 300:
        return []
    if rec.request_body is None:
        body: Any = None
        if op.operation["requestBody"].get("required"):
            return ["accepted a request without the required body"]
        return []
    try:
        body = json.loads(rec.request_body)
    except json.JSONDecodeError:
        return ["accepted a body that is not JSON"]
    errors = schema_errors(op, schema, body, request=True)
    return [f"accepted a body the description rejects: {e}" for e in errors]


def _response_problems(op: Operation, rec: RecordedRequest) -> list[str]:
    spec = op.response(rec.status)
    if spec is None:
        if rec.status >= 400:
            return []  # undocumented error statuses are common on GitHub; the shape was checked
        return [f"status {rec.status} is not documented for {op.key}"]
    content = spec.get("content", {}).get("application/json")
    if content is None:
        # An error documented without a body still carries GitHub's error (its shape checked).
        if rec.response_body is not None and rec.status < 400:
            return [f"a body where the description has none: {rec.response_body!r}"[:300]]
        return []
    schema = content.get("schema")
    if schema is None:
        return []
    return [f"response: {e}" for e in schema_errors(op, schema, rec.response_body, request=False)]
