"""A scheduled workflow of a fresh repository in the e2e world: each of its runs mints a key into
a repository secret that later runs read (`repository-secrets: true`, `lifetime: ttl`), as
docs/examples/rotate-repository-secret.yml does twice a day."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runkeys_sandbox.server.payloads import workflow_run_completed
from runkeys_sandbox.server.state import Installation, Repository, WorkflowRun
from tests.action.harness import Run, Step
from tests.e2e.pull_request import CONNECTION, Key, key_of
from tests.e2e.world import AUDIENCE, PERMISSIONS, Output, World
from tests.services import unique

SECRET_NAME = "DEPLOY_DATABASE_URL"


@dataclass(frozen=True)
class Rotation:
    """One scheduled run and the key it minted."""

    run: WorkflowRun
    step: Step
    main: Run
    key: Key


@dataclass
class Schedule:
    world: World
    repo: Repository
    installation: Installation
    rotations: list[Rotation] = field(default_factory=list)

    @classmethod
    def open(cls, world: World, name: str) -> Schedule:
        repo = world.sandbox.add_repository(f"{unique('octo').replace('_', '-')}/{name}")
        installation = world.sandbox.install(world.app, [repo], permissions=PERMISSIONS)
        world.opened.append(repo.full_name)
        return cls(world, repo, installation)

    def keys(self, ttl: str) -> str:
        return (
            f"{SECRET_NAME}: {{provider: postgres, connection: {CONNECTION}, "
            f"grant: [{self.world.postgres.group}], ttl: {ttl}, lifetime: ttl}}\n"
        )

    def inputs(self, ttl: str) -> dict[str, str]:
        assert self.world.service is not None
        return {
            "keys": self.keys(ttl),
            "repository-secrets": "true",
            "app-id": str(self.world.app.id),
            "private-key": self.world.app.private_key_pem,
            "service-url": self.world.service.url,
            "audience": AUDIENCE,
        }

    def rotate(self, ttl: str) -> Rotation:
        """A new scheduled run whose one job mints the key and writes the repository secret."""
        sandbox = self.world.sandbox
        run = sandbox.add_workflow_run(self.repo, event="schedule", name="rotate")
        job = self.world.tmp / f"{self.repo.owner}-run-{len(self.rotations) + 1}"
        step = Step(job, repository=self.repo.full_name, run_id=run.id)
        step.base_env.update(
            {
                "GITHUB_EVENT_NAME": "schedule",
                "GITHUB_API_URL": sandbox.url,
                "GITHUB_REPOSITORY_ID": str(self.repo.id),
                "RUNKEYS_CONNECTION_CI_DB": self.world.postgres.connection_url,
                **sandbox.runner_oidc_env(sandbox.run_claims(self.repo, run)),
            }
        )
        self.world.job_dirs.append(job)
        main = step.run(self.inputs(ttl))
        self.world.outputs.append(Output("runkeys-action", "\n".join(main.lines), main.stderr))
        assert main.returncode == 0, main.annotations("error")
        (item,) = main.keys_json()
        key = key_of(item, main.env)
        self.world.secrets += key.secrets(self.repo.full_name)
        main.assert_masked_first({key.name: key.value})
        rotation = Rotation(run, step, main, key)
        self.rotations.append(rotation)
        return rotation

    def post(self, rotation: Rotation) -> Run:
        """The job's post step, as the runner runs it at the end of the job."""
        ttl = "1h"
        extra = rotation.step.post_env(rotation.main)
        done = rotation.step.run(self.inputs(ttl), post=True, extra_env=extra)
        self.world.outputs.append(Output("runkeys-action-post", "\n".join(done.lines), done.stderr))
        assert done.returncode == 0
        return done

    def complete(self, rotation: Rotation) -> dict[str, Any]:
        """The run ends; GitHub delivers `workflow_run` `completed`."""
        sandbox = self.world.sandbox
        sandbox.set_run_status(self.repo, rotation.run.id, "completed", "success")
        self.world.publish_logs(self.repo, rotation.run.id, [("Run runkeys", rotation.main)])
        payload = workflow_run_completed(sandbox, self.repo, rotation.run.id, self.installation)
        assert self.world.service is not None
        url = f"{self.world.service.url}/webhook"
        answer = sandbox.deliver(url, "workflow_run", payload, app=self.world.app)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def secret(self) -> str | None:
        """The repository secret's value, as GitHub (the sandbox) holds it."""
        return self.world.sandbox.secret_value(self.repo, SECRET_NAME)
