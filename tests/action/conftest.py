"""The world an action step runs in: the sandbox GitHub with a repository and an installed App,
the real lease service (in this process), and a step whose files live in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runkeys_sandbox.server.sandbox import Sandbox
from runkeys_sandbox.server.state import App, Installation, Repository
from tests.action.harness import Step
from tests.action.service import AUDIENCE, Service

REPOSITORY = "octo/app"
RUN_ID = 4242
WRITES = ("PUT", "POST", "PATCH", "DELETE")


@dataclass
class GitHub:
    sandbox: Sandbox
    repo: Repository
    app: App
    installation: Installation
    step: Step

    def app_inputs(self, **more: str) -> dict[str, str]:
        return {"app-id": str(self.app.id), "private-key": self.app.private_key_pem, **more}

    def calls(self) -> list[str]:
        """`METHOD path` of every GitHub API call (not the runner's OIDC endpoints)."""
        return [
            f"{r.method} {r.path}"
            for r in self.sandbox.requests
            if not r.path.startswith("/_services/")
        ]

    def writes(self) -> list[str]:
        return [call for call in self.calls() if call.split()[0] in WRITES]

    def secret(self, name: str, environment: str | None = None) -> str | None:
        return self.sandbox.secret_value(self.repo, name, environment)


@pytest.fixture
def github(tmp_path: Path) -> Iterator[GitHub]:
    with Sandbox() as sandbox:
        repo = sandbox.add_repository(REPOSITORY, id=1296269)
        app = sandbox.add_app()
        installation = sandbox.install(app, [repo])
        step = Step(tmp_path, repository=REPOSITORY, run_id=RUN_ID)
        step.base_env["GITHUB_API_URL"] = sandbox.url
        yield GitHub(sandbox, repo, app, installation, step)


@pytest.fixture
def service(github: GitHub, tmp_path: Path) -> Iterator[Service]:
    """The runkeys service, as the App's operator runs it, trusting the sandbox's OIDC issuer;
    the step gets its URL and the runner's OIDC variables for this run."""
    served = Service(github.sandbox, github.app, tmp_path / "service")
    github.sandbox.add_workflow_run(github.repo, run_id=RUN_ID)
    claims = github.sandbox.run_claims(github.repo, RUN_ID)  # as GitHub signs them for this run
    github.step.base_env.update(github.sandbox.runner_oidc_env(claims))
    github.step.base_env["INPUT_SERVICE-URL"] = served.url
    github.step.base_env["INPUT_AUDIENCE"] = AUDIENCE
    github.step.base_env["INPUT_MODE"] = "local"  # these tests are about local mode
    try:
        yield served
    finally:
        served.stop()
