"""A GitHub API stand-in for tests, the demo, and dry runs of key specs (`runkeys sandbox`).

`Sandbox` (and its HTTP server, which needs the `sandbox` extra) is imported on first use, so
`runkeys_sandbox.server.oidc` and `runkeys_sandbox.server.webhooks` work without that extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runkeys_sandbox.server.oidc import OIDCIssuer, RunClaims
from runkeys_sandbox.server.recording import RecordedRequest

if TYPE_CHECKING:
    from runkeys_sandbox.server.sandbox import Sandbox

__all__ = ["OIDCIssuer", "RecordedRequest", "RunClaims", "Sandbox"]


def __getattr__(name: str) -> Any:
    if name == "Sandbox":
        from runkeys_sandbox.server.sandbox import Sandbox  # noqa: PLC0415 (needs the sandbox extra)

        return Sandbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
