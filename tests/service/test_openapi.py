"""docs/service-api.openapi.yaml describes the service as built: the same routes, and schemas
that are valid JSON Schema (responses are checked against them throughout the API tests)."""

from __future__ import annotations

from flask import Flask
from openapi_schema_validator import OAS31Validator

from tests.service.kit import api_spec


def test_every_route_is_documented_and_every_documented_route_exists(app: Flask) -> None:
    served = {
        (rule.rule, method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {
        (path, method) for path, operations in api_spec()["paths"].items() for method in operations
    }
    assert served == documented


def test_the_schemas_are_valid() -> None:
    spec = api_spec()
    assert spec["openapi"].startswith("3.1")
    for schema in spec["components"]["schemas"].values():
        OAS31Validator.check_schema({**schema, "components": spec["components"]})


def test_every_operation_documents_its_errors_in_the_one_shape() -> None:
    spec = api_spec()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, given in operation["responses"].items():
                if int(status) < 400:
                    continue
                response = given
                if "$ref" in given:
                    response = spec["components"]["responses"][given["$ref"].split("/")[-1]]
                schema = response["content"]["application/json"]["schema"]
                ref = schema.get("$ref", "")
                assert ref.endswith(("/Error", "/RetireNotFound")), (path, method, status)
