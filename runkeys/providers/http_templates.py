"""The `http` provider's request templates and answer paths: checked, filled and read here, with
no I/O, so the spec check refuses a bad template before anything is sent.

Placeholders are `{name}` and nothing else; headers may use the connection's `{user}` and
`{password}`, so no credential is written in a spec (docs/providers.md#http)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runkeys.errors import ParamError
from runkeys.providers.http_paths import UnsafeRequest, path_problem, query_value, segment

MINT_PLACEHOLDERS = frozenset({"label", "key_name", "expires_at"})
REVOKE_PLACEHOLDERS = frozenset({"reference"})
CREDENTIAL_PLACEHOLDERS = frozenset({"user", "password"})  # in headers only
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
REQUEST_FIELDS = {"method", "path", "headers", "body"}
RESPONSE_FIELDS = {"value", "reference", "expires_at"}
MAX_BODY = 16_384  # characters of JSON: a template, not a payload
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Anything in braces is checked as a placeholder, so `{Label}` or `{label.upper}` is an error
# rather than text sent as it is.
_BRACED = re.compile(r"\{([^{}]*)\}")
_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/{}?-]*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# runkeys' own headers (a spec setting them could revoke or receive another lease's token) and
# those deciding where and what is sent; compared as a server would, in any case and trimmed.
OWN_HEADERS = frozenset(
    {"runkeys-label", "idempotency-key", "host", "content-length", "transfer-encoding"}
)
# Control characters other than tab (RFC 9110 §5.5): a line break would start another header.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_DOTTED = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


@dataclass
class Call:
    """One request to send, its placeholders filled (the credentials' ones in headers aside)."""

    method: str
    path: str  # below the connection's base URL
    headers: dict[str, str]
    body: Any = None


# --- checks (the spec check runs these) ---------------------------------------------------------


def check_request(field: str, spec: Any, placeholders: frozenset[str]) -> None:
    if spec is None:
        raise ParamError(field, "missing", fix=f"add `{field}: {{path: /…}}`")
    if not isinstance(spec, Mapping):
        raise ParamError(field, "must be a mapping of method, path, headers, body")
    for key in spec:
        if key not in REQUEST_FIELDS:
            raise ParamError(
                f"{field}.{key}", "unknown field", fix="use method, path, headers, body"
            )
    method = spec.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ParamError(f"{field}.method", f"{method!r} is not one of {METHODS}")
    _check_path(f"{field}.path", spec.get("path"), placeholders)
    _check_headers(f"{field}.headers", spec.get("headers", {}), placeholders)
    body = spec.get("body")
    _check_body(f"{field}.body", body, placeholders)
    if "reference" in placeholders and not (
        "{reference}" in str(spec.get("path")) or "{reference}" in json.dumps(body)
    ):
        raise ParamError(field, "does not say which credential", fix="use {reference} in its path")


def check_response(spec: Any) -> None:
    if not isinstance(spec, Mapping):
        raise ParamError("response", "missing", fix="add `response: {value: token, reference: id}`")
    for key in spec:
        if key not in RESPONSE_FIELDS:
            raise ParamError(
                f"response.{key}", "unknown field", fix="use value, reference, expires_at"
            )
    for key in ("value", "reference"):
        if key not in spec:
            raise ParamError(f"response.{key}", "missing", fix="a dotted path like data.token")
    for key, path in spec.items():
        if not isinstance(path, str) or not _DOTTED.fullmatch(path):
            raise ParamError(f"response.{key}", f"{path!r} is not a dotted path like data.token")


def _check_path(field: str, path: Any, placeholders: frozenset[str]) -> None:
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise ParamError(
            field,
            f"{path!r} is not a path",
            fix="a path below the connection's URL, starting with /, e.g. /v1/tokens",
        )
    problem = path_problem(_PLACEHOLDER.sub("x", path.split("?")[0]))
    if problem is not None:
        raise ParamError(
            field,
            f"{path!r} {problem}: it could leave the connection's URL",
            fix="a path below the connection's URL with no `.` or `..` segment (even "
            "percent-encoded) and no encoded slash or backslash; a base path that needs one "
            "belongs in the connection's URL",
        )
    _check_placeholders(field, path, placeholders)


def _check_headers(field: str, headers: Any, placeholders: frozenset[str]) -> None:
    if not isinstance(headers, Mapping):
        raise ParamError(field, "must be a mapping of header names to values")
    for name, value in headers.items():
        if isinstance(name, str) and name.strip().lower() in OWN_HEADERS:
            raise ParamError(
                field,
                f"header {name.strip()!r} is not the spec's: runkeys sets it itself",
                fix="remove it: runkeys sends Runkeys-Label and Idempotency-Key with the lease's "
                "label itself",
            )
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ParamError(field, f"{name!r} is not a header name")
        if not isinstance(value, str) or _CONTROL.search(value):
            raise ParamError(
                f"{field}.{name}", "must be a string without line breaks or control characters"
            )
        _check_placeholders(f"{field}.{name}", value, placeholders | CREDENTIAL_PLACEHOLDERS)


def _check_body(field: str, body: Any, placeholders: frozenset[str]) -> None:
    try:
        text = json.dumps(body, allow_nan=False)
    except (TypeError, ValueError):
        raise ParamError(field, "must be JSON: mappings, lists, strings, numbers") from None
    if len(text) > MAX_BODY:
        raise ParamError(field, f"longer than {MAX_BODY} characters of JSON")
    for string in _strings(body):
        _check_placeholders(field, string, placeholders)


def _check_placeholders(field: str, text: str, allowed: frozenset[str]) -> None:
    for name in _BRACED.findall(text):
        if name not in allowed:
            raise ParamError(
                field,
                f"unknown placeholder {{{name}}}",
                fix="use " + ", ".join(f"{{{n}}}" for n in sorted(allowed)),
            )


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, Mapping):
        return [s for key, value in node.items() for s in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


# --- filling and reading ------------------------------------------------------------------------


def build_call(field: str, spec: Any, fields: Mapping[str, str], *, default_method: str) -> Call:
    """The request `spec` (the spec's `field`) describes, with `fields` filled in: each value
    one segment in the path, one value in the query, as it is in headers and the JSON body.

    The spec is checked again first: a ledger row may hold a template no check ever saw. Raises
    `ParamError` for the template, `UnsafeRequest` for a value."""
    check_request(field, spec, frozenset(fields))
    path, mark, query = str(spec["path"]).partition("?")
    headers = {str(k): fill(str(v), fields) for k, v in spec.get("headers", {}).items()}
    _check_filled(headers)
    return Call(
        method=str(spec.get("method", default_method)).upper(),
        path=fill(path, fields, encode=segment) + mark + fill(query, fields, encode=_in_query),
        headers=headers,
        body=_fill_json(spec.get("body"), fields),
    )


def fill_headers(headers: Mapping[str, str], credentials: Mapping[str, str]) -> dict[str, str]:
    """`headers` with the connection's credentials filled in, checked once more: a password
    may hold a line break. Raises `UnsafeRequest` naming the header, never its value."""
    filled = {name: fill(value, credentials) for name, value in headers.items()}
    _check_filled(filled)
    return filled


def fill(
    text: str, fields: Mapping[str, str], *, encode: Callable[[str, str], str] | None = None
) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in fields:
            return match.group(0)  # another stage's placeholder
        return encode(name, fields[name]) if encode else fields[name]

    return _PLACEHOLDER.sub(value, text)


def _in_query(name: str, value: str) -> str:
    return query_value(value)


def _check_filled(headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        if _CONTROL.search(value):
            raise UnsafeRequest(f"header {name} holds a control character once filled in")


def _fill_json(node: Any, fields: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return fill(node, fields)
    if isinstance(node, Mapping):
        return {fill(str(k), fields): _fill_json(v, fields) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill_json(item, fields) for item in node]
    return node


def find(document: Any, path: str) -> Any:
    """The value at a dotted path (`data.token`, `items.0.id`), or None."""
    node = document
    for step in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(step)
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            return None
    return node
