"""A GitHub API stand-in for tests, the demo, and dry runs of key specs (`runkeys sandbox`).

The stand-in itself is `runkeys_sandbox.server.sandbox.Sandbox`; the OIDC issuer and the
webhook signer here work without its HTTP server.
"""

from __future__ import annotations

from runkeys_sandbox.server.oidc import OIDCIssuer, RunClaims
from runkeys_sandbox.server.recording import RecordedRequest

__all__ = ["OIDCIssuer", "RecordedRequest", "RunClaims"]
