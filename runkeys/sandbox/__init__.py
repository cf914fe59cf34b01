"""A GitHub API stand-in for tests, the demo, and dry runs of key specs (`runkeys sandbox`)."""

from runkeys.sandbox.oidc import OIDCIssuer, RunClaims
from runkeys.sandbox.recording import RecordedRequest
from runkeys.sandbox.sandbox import Sandbox

__all__ = ["OIDCIssuer", "RecordedRequest", "RunClaims", "Sandbox"]
