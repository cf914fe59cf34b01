"""The GitHub data the tests read, vendored under `tests/github/` (sources and licences in its
SOURCE.md): every test finds it here, so none reads outside the repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]

ROOT = Path(__file__).parent / "github"
OPENAPI = ROOT / "openapi"
ACTION_SCHEMA = ROOT / "action" / "github-actions.json"
WEBHOOK_EXAMPLES = ROOT / "webhooks" / "examples"
WEBHOOK_SCHEMAS = ROOT / "webhooks" / "schemas"
DELIVERIES = ROOT / "webhooks" / "deliveries"
# The secret GitHub signed the recorded deliveries with, published with them.
DELIVERIES_SECRET = "402786017574bd28f9d8f7a18648939751c47fe09077d56e10f0444f14fbb73b"


def openapi_fragments() -> list[dict[str, Any]]:
    """One fragment of GitHub's REST description per operation the sandbox serves."""
    return [openapi_fragment(path.name) for path in sorted(OPENAPI.glob("*.json"))]


def openapi_fragment(name: str) -> dict[str, Any]:
    """The fragment `name` (e.g. `apps_get-installation.json`)."""
    data: dict[str, Any] = json.loads((OPENAPI / name).read_text())
    return data


def action_schema() -> dict[str, Any]:
    """SchemaStore's JSON schema of `action.yml`."""
    data: dict[str, Any] = json.loads(ACTION_SCHEMA.read_text())
    return data


def webhook_example(path: str) -> dict[str, Any]:
    """GitHub's example payload at `path` (e.g. `ping/with-app_id.payload.json`)."""
    data: dict[str, Any] = json.loads((WEBHOOK_EXAMPLES / path).read_text())
    return data


def webhook_schema(name: str) -> Any:
    """A validator for the payload of webhook `name` (e.g. `workflow-run-completed`), built from
    GitHub's webhook description."""
    document = json.loads((WEBHOOK_SCHEMAS / f"{name}.json").read_text())
    root = document["post"]["requestBody"]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator({**root, "components": document["components"]})


def recorded_deliveries() -> list[Path]:
    """The body file of every recorded delivery (`<event>/<event>.<action>.body.raw`)."""
    return sorted(DELIVERIES.glob("*/*.body.raw"))


def recorded_delivery(which: str | Path) -> tuple[dict[str, str], bytes]:
    """The headers and exact signed body of a recorded delivery: a path from
    `recorded_deliveries()`, or a name (e.g. `pull_request.closed`)."""
    if isinstance(which, Path):
        raw = which
    else:
        raw = DELIVERIES / which.split(".", maxsplit=1)[0] / f"{which}.body.raw"
    headers: dict[str, str] = json.loads(
        raw.with_name(raw.name.replace(".body.raw", ".headers.json")).read_text()
    )
    return headers, raw.read_bytes()
