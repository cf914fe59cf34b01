"""`runkeys sandbox`: the GitHub stand-in in the foreground, seeded with repositories, a GitHub
App installed on them and a running workflow run, printing the environment a user needs to
point runkeys (or PyGithub, or curl) at it. Serves until Ctrl-C.

`start_seeded` is the seam for commands that drive the seeded sandbox instead of waiting: it
returns everything they need. `--keys FILE` is one: a dry run of a `keys` spec
(`runkeys.demo_dryrun`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from runkeys.errors import ConfigError

if TYPE_CHECKING:  # the server (Flask) is imported when a sandbox starts, not for `--help`
    from runkeys.sandbox.sandbox import Sandbox
    from runkeys.sandbox.state import App, Installation, Repository, WorkflowRun

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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="run a local GitHub API stand-in (secrets, environments, deploy keys, App, OIDC)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=main)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=0, help="loopback port to listen on (default: a free one)"
    )
    parser.add_argument(
        "--repository",
        action="append",
        metavar="OWNER/NAME",
        help=f"a repository to create (repeatable; default {DEFAULT_REPOSITORY})",
    )
    parser.add_argument("--app-id", type=int, help="the GitHub App's id (default: generated)")
    parser.add_argument("--webhook-secret", help="the App's webhook secret (default: random)")
    parser.add_argument(
        "--keys",
        metavar="FILE",
        help="dry-run this `keys` spec (- for stdin): mint, deliver and retire it through the "
        "action and a local runkeys service, print what went where and every GitHub API call, "
        "then exit (connections come from your RUNKEYS_CONNECTION_* variables)",
    )
    parser.add_argument(
        "--environment",
        default="ci-pr-{pr}",
        metavar="TEMPLATE",
        help="with --keys: the action's `environment` input (default ci-pr-{pr}; '' for job only)",
    )


def start_seeded(args: argparse.Namespace, workdir: Path) -> Seeded:
    """Start a sandbox on `args.port`, seed it, and write the App's private key into `workdir`."""
    from runkeys.sandbox.sandbox import Sandbox  # noqa: PLC0415 (see the imports)

    names = args.repository or [DEFAULT_REPOSITORY]
    _check_arguments(args.port, names)
    sandbox = Sandbox(port=args.port).start()
    try:
        repos = tuple(sandbox.add_repository(name) for name in names)
        app = sandbox.add_app(args.app_id, args.webhook_secret)
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


def _check_arguments(port: int, names: list[str]) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError("--port", f"{port} is not a TCP port", fix="use 1-65535, or 0 for any")
    for name in names:
        owner, _, repo = name.partition("/")
        if not owner or not repo or "/" in repo:
            raise ConfigError(
                "--repository", f"{name!r} is not OWNER/NAME", fix="e.g. --repository octo/app"
            )
    if len({n.lower() for n in names}) != len(names):
        raise ConfigError("--repository", "a repository is named twice", fix="name each once")


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


def main(args: argparse.Namespace) -> int:
    if args.keys is not None:
        from runkeys.demo_dryrun import dry_run  # noqa: PLC0415 (the service's client side)

        return dry_run(args)
    with tempfile.TemporaryDirectory(prefix="runkeys-sandbox-") as tmp:
        seeded = start_seeded(args, Path(tmp))
        try:
            print_environment(seeded, sys.stdout)
            threading.Event().wait()  # until Ctrl-C
        except KeyboardInterrupt:
            print("runkeys sandbox: stopped. It held:", file=sys.stderr)
            print_contents(seeded, sys.stderr)
        finally:
            seeded.sandbox.stop()
    return 0
