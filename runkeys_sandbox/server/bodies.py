"""Request bodies checked as GitHub checks them, with GitHub's messages: 422 `Invalid request.`
and what is wrong (rest-api-description issues #419 and #1688).

The schemas are the operations' request schemas from GitHub's REST description, written out by
hand so the sandbox does not need it at run time; `tests/openapi` checks them against it."""

from __future__ import annotations

import json
import re
from typing import Any

from runkeys_sandbox.server.errors import PROBLEMS_PARSING_JSON, ApiError

Schema = dict[str, Any]

BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"

SECRET: Schema = {
    "type": "object",
    "properties": {
        "encrypted_value": {"type": "string", "pattern": BASE64},
        "key_id": {"type": "string"},
    },
    "required": ["encrypted_value", "key_id"],
}

ORG_SECRET: Schema = {
    "type": "object",
    "properties": {
        **SECRET["properties"],
        "visibility": {"type": "string", "enum": ["all", "private", "selected"]},
        "selected_repository_ids": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["encrypted_value", "key_id", "visibility"],
}

ENVIRONMENT: Schema = {
    "type": "object",
    "nullable": True,
    "additionalProperties": False,
    "properties": {
        # The description says 0 to 43,200 minutes and at most six reviewers; GitHub enforces both.
        "wait_timer": {"type": "integer", "minimum": 0, "maximum": 43200},
        "prevent_self_review": {"type": "boolean"},
        "reviewers": {
            "type": "array",
            "nullable": True,
            "maxItems": 6,
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["User", "Team"]},
                    "id": {"type": "integer"},
                },
            },
        },
        "deployment_branch_policy": {
            "type": "object",
            "nullable": True,
            "properties": {
                "protected_branches": {"type": "boolean"},
                "custom_branch_policies": {"type": "boolean"},
            },
            "required": ["protected_branches", "custom_branch_policies"],
        },
    },
}

DEPLOY_KEY: Schema = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "key": {"type": "string"},
        "read_only": {"type": "boolean"},
    },
    "required": ["key"],
}

ACCESS_TOKEN: Schema = {
    "type": "object",
    "properties": {
        "repositories": {"type": "array", "items": {"type": "string"}},
        "repository_ids": {"type": "array", "items": {"type": "integer"}},
        "permissions": {"type": "object"},
    },
}

SECRET_SCANNING_ALERT_UPDATE: Schema = {
    "type": "object",
    "properties": {
        "state": {"type": "string", "enum": ["open", "resolved"]},
        "resolution": {
            "type": "string",
            "nullable": True,
            "enum": ["false_positive", "wont_fix", "revoked", "used_in_tests"],
        },
        "resolution_comment": {"type": "string", "nullable": True},
        "assignee": {"type": "string", "nullable": True},
        "validity": {"type": "string", "nullable": True, "enum": ["active", "inactive"]},
    },
}

# Where GitHub's messages place the body itself (its schemas are JSON hyper-schema links).
ROOT = "links/0/schema"

_ARTICLE = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "boolean": "a boolean",
    "number": "a number",
}


def parse(raw: bytes, schema: Schema, *, optional: bool = False) -> Any:
    """The JSON body, checked against `schema`; `optional` bodies may be absent (→ `{}`)."""
    if not raw.strip():
        if optional:
            return {}
        value: Any = None
    else:
        if _nesting(raw) > MAX_NESTING:
            raise ApiError(400, PROBLEMS_PARSING_JSON)
        try:
            value = json.loads(raw, parse_constant=_not_json)
        except (ValueError, RecursionError):  # bad UTF-8 or JSON, NaN
            raise ApiError(400, PROBLEMS_PARSING_JSON) from None
    problems = check(schema, value, ROOT)
    if problems:
        raise ApiError(422, "Invalid request.\n\n" + "\n".join(problems))
    return value


# No request body of the API nests deeper than a few levels; deeper ones are refused before
# parsing, as the standard parser recurses once per level.
MAX_NESTING = 64


def _nesting(raw: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets in strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")  # Python accepts NaN and Infinity; JSON does not


def check(schema: Schema, value: Any, where: str) -> list[str]:
    """GitHub-style messages for every way `value` breaks `schema` (a JSON-schema subset)."""
    if value is None:
        return [] if schema.get("nullable") else [f"For '{where}', nil is not {_expected(schema)}."]
    kind = schema.get("type")
    if kind and not _is_type(value, kind):
        return [f"For '{where}', {_show(value)} is not {_ARTICLE[kind]}."]
    problems: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(
            f"For '{where}', {_show(value)} is not a member of {_show(schema['enum'])}."
        )
    if "pattern" in schema and not re.search(schema["pattern"], value):
        shown = schema["pattern"].replace("/", "\\/")
        problems.append(f"{value} does not match /{shown}/.")
    if "minimum" in schema and value < schema["minimum"]:
        problems.append(f"For '{where}', {value} is less than the minimum of {schema['minimum']}.")
    if "maximum" in schema and value > schema["maximum"]:
        problems.append(
            f"For '{where}', {value} is greater than the maximum of {schema['maximum']}."
        )
    if kind == "array":
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(
                f"For '{where}', {_show(value)} has more than {schema['maxItems']} items."
            )
        for item in value:
            problems += check(schema.get("items", {}), item, f"{where}/items")
    if kind == "object":
        problems += _check_object(schema, value, where)
    return problems


def _check_object(schema: Schema, value: dict[str, Any], where: str) -> list[str]:
    problems = [
        f'"{name}" wasn\'t supplied.' for name in schema.get("required", ()) if name not in value
    ]
    properties: dict[str, Schema] = schema.get("properties", {})
    for name, item in value.items():
        if name in properties:
            inner = f"properties/{name}" if where == ROOT else f"{where}/properties/{name}"
            problems += check(properties[name], item, inner)
        elif schema.get("additionalProperties") is False:
            problems.append(f'"{name}" is not a permitted key.')
    return problems


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    expected = {"object": dict, "array": list, "string": str, "boolean": bool}[kind]
    return isinstance(value, expected)


def _expected(schema: Schema) -> str:
    return _ARTICLE.get(schema.get("type", "object"), "a value")


def _show(value: Any) -> str:
    """A value as GitHub's (Ruby) messages show it."""
    return "nil" if value is None else json.dumps(value)
