"""runkeys: fresh, short-lived provisioning keys for integration tests on GitHub Actions.

The shared core. `action_src` (the container action) and `handler` (the webhook service) are thin
adapters over it; the core does no workflow-command I/O and imports no Flask (the sandbox aside).
"""

__version__ = "0.1.0"
