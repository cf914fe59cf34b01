"""A started stand-in seeded with repositories, a GitHub App installed on them and a running
workflow run: the plain API that `runkeys sandbox`, the demo and dry runs all call."""

from __future__ import annotations

import json
import os
import shlex
import urllib.parse
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the server (Werkzeug) is imported when a sandbox starts, not for `--help`
    from runkeys_sandbox.server.sandbox import Sandbox
    from runkeys_sandbox.server.state import App, Installation, Repository, WorkflowRun

DEFAULT_REPOSITORY = "octo/app"
# `runkeys serve`'s default bind; the service's URL is its OIDC audience.
DEFAULT_SERVICE_URL = "http://127.0.0.1:8080"
# What a shell of someone else's should not see: the env file holds these, stdout does not.
SECRET_NAMES = frozenset(
    {"RUNKEYS_WEBHOOK_SECRET", "GITHUB_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"}
)


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
    workdir: Path | None = None
    pull_request: int | None = None  # the run's, when it is a pull request's run
    service_url: str = DEFAULT_SERVICE_URL

    def environment(self) -> dict[str, str]:
        """Variables for a shell, a workflow-like run, or the service, pointing at the sandbox:
        what a job of the seeded run sees, and what `runkeys serve` needs to serve it."""
        sb, repo = self.sandbox, self.repositories[0]
        claims = sb.run_claims(repo, self.run)
        env = {
            "GITHUB_API_URL": sb.url,
            "GITHUB_REPOSITORY": repo.full_name,
            "GITHUB_REPOSITORY_ID": str(repo.id),
            "GITHUB_RUN_ID": str(self.run.id),
            "GITHUB_RUN_ATTEMPT": str(self.run.latest.number),
            "GITHUB_RUN_NUMBER": str(self.run.run_number),
            "GITHUB_TOKEN": self.workflow_token,
        }
        if self.pull_request is not None and self.workdir is not None:
            claims = replace(
                claims,
                ref=f"refs/pull/{self.pull_request}/merge",
                event_name="pull_request",
                extra={"head_ref": self.run.head_branch, "base_ref": repo.default_branch},
            )
            env.update(
                GITHUB_EVENT_NAME="pull_request",
                GITHUB_EVENT_PATH=str(_event_file(self.workdir, self.pull_request)),
                GITHUB_REF=claims.ref,
            )
        env.update(
            {
                "RUNKEYS_APP_ID": str(self.app.id),
                "RUNKEYS_PRIVATE_KEY_FILE": str(self.private_key_file),
                "RUNKEYS_WEBHOOK_SECRET": self.app.webhook_secret,
                "RUNKEYS_OIDC_ISSUER": sb.oidc_issuer_url,
                "RUNKEYS_OIDC_AUDIENCE": self.service_url,
                **sb.runner_oidc_env(claims),
            }
        )
        if self.workdir is not None:  # the ledger goes with the stand-in it speaks of
            env["RUNKEYS_DATABASE_URL"] = f"sqlite:///{self.workdir / 'ledger.sqlite3'}"
        return env


def _event_file(workdir: Path, number: int) -> Path:
    """The event payload the runner writes for a pull request's run (`GITHUB_EVENT_PATH`)."""
    path = workdir / "event.json"
    if not path.exists():
        event = {"action": "synchronize", "number": number, "pull_request": {"number": number}}
        path.write_text(json.dumps(event))
    return path


def start_seeded(
    workdir: Path,
    *,
    port: int = 0,
    repositories: Sequence[str] = (DEFAULT_REPOSITORY,),
    app_id: int | None = None,
    webhook_secret: str | None = None,
    webhook_url: str | None = None,
    pull_request: int | None = None,
) -> Seeded:
    """Start a sandbox on `port` (0: any free one) holding `repositories` (OWNER/NAME), one App
    installed on them (one installation per owner) and a workflow run in the first (a run of
    `pull_request` when given), and write the App's private key into `workdir`. With
    `webhook_url`, the control API delivers the App's webhooks there, and the service's URL
    (its OIDC audience) is that URL's origin."""
    from runkeys_sandbox.server.sandbox import Sandbox  # noqa: PLC0415 (see the imports)

    service_url = DEFAULT_SERVICE_URL
    if webhook_url is not None:
        parts = urllib.parse.urlsplit(webhook_url)
        service_url = f"{parts.scheme}://{parts.netloc}"
    sandbox = Sandbox(port=port, webhook_url=webhook_url).start()
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
        if pull_request is None:
            run = sandbox.add_workflow_run(repos[0])
        else:
            run = sandbox.add_workflow_run(
                repos[0],
                event="pull_request",
                head_branch=f"pr-{pull_request}",
                pull_requests=[pull_request],
            )
        token = sandbox.workflow_token(repos[0])
    except BaseException:
        sandbox.stop()
        raise
    return Seeded(
        sandbox,
        repos,
        app,
        installations,
        key_file,
        run,
        token,
        workdir=workdir,
        pull_request=pull_request,
        service_url=service_url,
    )


def export_lines(environment: dict[str, str]) -> list[str]:
    """`export NAME=value` lines a POSIX shell reads back exactly (`. FILE`)."""
    return [f"export {name}={shlex.quote(value)}" for name, value in environment.items()]


def write_env_file(path: Path, environment: dict[str, str]) -> None:
    """The export lines in `path`, readable by its owner only (it holds the webhook secret and
    tokens), written whole: a shell sourcing it never reads half of it."""
    text = "".join(line + "\n" for line in export_lines(environment))
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(partial, path)


def sourceable(path: Path) -> str:
    """How to name `path` to `.`: a bare name would be looked up on PATH."""
    text = str(path)
    return shlex.quote(text if "/" in text else f"./{text}")


def print_environment(seeded: Seeded, out: TextIO, env_file: Path | None = None) -> None:
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
    pr = f" of pull request #{seeded.pull_request}" if seeded.pull_request is not None else ""
    print(f"  workflow run {seeded.run.id}{pr} (in_progress)", file=out)
    if sb.webhook_url is not None:
        print(f"  the App's webhook deliveries go to {sb.webhook_url}", file=out)
    environment = seeded.environment()
    if env_file is None:
        print("\nEnvironment (export these):", file=out)
        print("\n".join(export_lines(environment)), file=out)
    else:
        write_env_file(env_file, environment)
        shown = {k: v for k, v in environment.items() if k not in SECRET_NAMES}
        hidden = ", ".join(k for k in environment if k in SECRET_NAMES)
        print(f"\nEnvironment written to {env_file} (mode 0600); in another shell:", file=out)
        print(f"  . {sourceable(env_file)}", file=out)
        print(f"It sets these, and {hidden} (values only in the file):", file=out)
        print("\n".join(export_lines(shown)), file=out)
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
