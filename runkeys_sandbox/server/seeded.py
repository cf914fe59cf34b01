"""A started stand-in seeded with repositories, a GitHub App installed on them and a running
workflow run: the plain API that `runkeys sandbox`, the demo and dry runs all call."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the server (Werkzeug) is imported when a sandbox starts, not for `--help`
    from runkeys_sandbox.server.sandbox import Sandbox
    from runkeys_sandbox.server.state import App, Installation, Repository, WorkflowRun

DEFAULT_REPOSITORY = "octo/app"


@dataclass(frozen=True)
class Seeded:
    """A started sandbox and what was put in it."""

    sandbox: Sandbox
    repositories: tuple[Repository, ...]
    app: App
    installations: tuple[Installation, ...]
    private_key_file: Path
    run: WorkflowRun
    workflow_token: str

    def environment(self) -> dict[str, str]:
        """Variables for a shell, a workflow-like run, or the service, pointing at the sandbox."""
        sb, repo = self.sandbox, self.repositories[0]
        claims = sb.run_claims(repo, self.run)
        return {
            "GITHUB_API_URL": sb.url,
            "GITHUB_REPOSITORY": repo.full_name,
            "GITHUB_REPOSITORY_ID": str(repo.id),
            "GITHUB_RUN_ID": str(self.run.id),
            "GITHUB_RUN_ATTEMPT": str(self.run.latest.number),
            "GITHUB_TOKEN": self.workflow_token,
            "RUNKEYS_APP_ID": str(self.app.id),
            "RUNKEYS_PRIVATE_KEY_FILE": str(self.private_key_file),
            "RUNKEYS_WEBHOOK_SECRET": self.app.webhook_secret,
            "RUNKEYS_OIDC_ISSUER": sb.oidc_issuer_url,
            **sb.runner_oidc_env(claims),
        }


def start_seeded(
    workdir: Path,
    *,
    port: int = 0,
    repositories: Sequence[str] = (DEFAULT_REPOSITORY,),
    app_id: int | None = None,
    webhook_secret: str | None = None,
) -> Seeded:
    """Start a sandbox on `port` (0: any free one) holding `repositories` (OWNER/NAME), one App
    installed on them (one installation per owner) and a workflow run in the first, and write
    the App's private key into `workdir`."""
    from runkeys_sandbox.server.sandbox import Sandbox  # noqa: PLC0415 (see the imports)

    sandbox = Sandbox(port=port).start()
    try:
        repos = tuple(sandbox.add_repository(name) for name in repositories)
        app = sandbox.add_app(app_id, webhook_secret)
        by_owner: dict[str, list[Repository]] = defaultdict(list)
        for repo in repos:
            by_owner[repo.owner.lower()].append(repo)
        installations = tuple(sandbox.install(app, group) for group in by_owner.values())
        key_file = workdir / f"app-{app.id}.private-key.pem"
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(app.private_key_pem)
        run = sandbox.add_workflow_run(repos[0])
        token = sandbox.workflow_token(repos[0])
    except BaseException:
        sandbox.stop()
        raise
    return Seeded(sandbox, repos, app, installations, key_file, run, token)


def print_environment(seeded: Seeded, out: TextIO) -> None:
    sb = seeded.sandbox
    print(f"runkeys sandbox: a GitHub API stand-in at {sb.url}", file=out)
    for repo in seeded.repositories:
        print(f"  repository {repo.full_name} (id {repo.id})", file=out)
    for installation in seeded.installations:
        print(
            f"  App {seeded.app.id} installed on {installation.account.login}"
            f" (installation {installation.id})",
            file=out,
        )
    print(f"  workflow run {seeded.run.id} (in_progress)", file=out)
    print("\nEnvironment (export these):", file=out)
    for name, value in seeded.environment().items():
        print(f"{name}={value}", file=out)
    print("\nServing until Ctrl-C.", file=out, flush=True)


def print_contents(seeded: Seeded, out: TextIO) -> None:
    """What the sandbox holds now: names, scopes and keys, never a secret's value."""
    sb = seeded.sandbox
    for repo in seeded.repositories:
        print(f"{repo.full_name}:", file=out)
        print(f"  repository secrets: {', '.join(sb.secret_names(repo)) or '-'}", file=out)
        for env in sb.environment_names(repo):
            print(f"  environment {env}: {', '.join(sb.secret_names(repo, env)) or '-'}", file=out)
        for key in sb.deploy_keys(repo):
            access = "read-only" if key["read_only"] else "read-write"
            print(f"  deploy key {key['id']} {key['title']!r} ({access})", file=out)
