"""`workflow_run` `completed` deliveries as GitHub sends them to an App: the payload built from
the sandbox's REST representations (the same `workflow_run` and `repository` objects GitHub
puts in the webhook), compact JSON, signed with the App's webhook secret.

For a load generator the payload is a template: the run id is `RUN_PLACEHOLDER` wherever it
appears, so each request can name another run and carry the signature made for its bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from handler.webhooks import sign
from runkeys_sandbox.server.representations import account_json, repository_json, workflow_run_json
from runkeys_sandbox.server.sandbox import Sandbox

RUN_PLACEHOLDER = "@RUN@"
_SENTINEL = 7_707_707_707_707  # a run id no other number in the payload can be


@dataclass(frozen=True)
class RunDeliveries:
    """A repository and installation, and how to make a signed delivery for any of its runs."""

    repository_id: int
    repository: str
    installation_id: int
    owner_id: int
    template: str  # compact JSON with RUN_PLACEHOLDER for the run id

    def body(self, run_id: int) -> bytes:
        return self.template.replace(RUN_PLACEHOLDER, str(run_id)).encode()

    def signed(self, run_id: int, secret: str) -> tuple[bytes, str]:
        body = self.body(run_id)
        return body, sign(body, secret)


def run_deliveries(
    repository: str = "octo-org/app",
    *,
    repository_id: int | None = None,
    installation_id: int = 4_200_001,
) -> RunDeliveries:
    """A realistic `workflow_run.completed` payload (≈18 KB, as GitHub's are) as a template,
    for a repository of that name and id (that of a live sandbox's repository, say)."""
    sandbox = Sandbox()  # not started: only its representations are used
    repo = sandbox.add_repository(repository, id=repository_id)
    run = sandbox.add_workflow_run(repo, run_id=_SENTINEL, status="completed", conclusion="success")
    base = "https://api.github.com"
    payload: dict[str, Any] = {
        "action": "completed",
        "workflow_run": workflow_run_json(repo, run, run.latest, base),
        "workflow": {
            "id": run.workflow_id,
            "node_id": f"W_kwDO{run.workflow_id}",
            "name": run.name,
            "path": run.path,
            "state": "active",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "url": f"{base}/repos/{repository}/actions/workflows/{run.workflow_id}",
            "html_url": f"https://github.com/{repository}/blob/main/{run.path}",
            "badge_url": f"https://github.com/{repository}/workflows/CI/badge.svg",
        },
        "repository": repository_json(repo, base),
        "organization": account_json(repo.account, base),
        "sender": account_json(repo.account, base),
        "installation": {
            "id": installation_id,
            "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ==",
        },
    }
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return RunDeliveries(
        repository_id=repo.id,
        repository=repository,
        installation_id=installation_id,
        owner_id=repo.account.id,
        template=text.replace(str(_SENTINEL), RUN_PLACEHOLDER),
    )
