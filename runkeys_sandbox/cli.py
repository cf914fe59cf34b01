"""The `runkeys sandbox` and `runkeys demo` commands. `runkeys.cli` loads this module only when
the `sandbox` extra is installed; everything heavier is imported when a command runs."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path

from runkeys.errors import ConfigError
from runkeys_sandbox.server.seeded import DEFAULT_REPOSITORY

SANDBOX = """\
`runkeys sandbox`: the GitHub stand-in in the foreground, seeded with repositories, a GitHub
App installed on them and a pull request's workflow run in progress, printing the environment
(`export` lines; `--env-file` writes them to a file instead) a user needs to point runkeys (or
PyGithub, or curl) at it. Serves until Ctrl-C. With `--webhook-url`, ending the run
(`runkeys sandbox complete-run`) or closing the pull request (`close-pr`) sends the service the
signed delivery GitHub would send. With `--keys FILE`, a dry run of that `keys` spec instead;
with `--keys FILE --service-url URL`, the action's step against a running stand-in and service
(from the exported environment).
"""

DEMO = """\
`runkeys demo`: the life of two CI keys on this machine, told as it happens.

It starts a GitHub stand-in (the sandbox) and the runkeys service, runs the action as a workflow
step would, then ends the job (the post step) and the run (a signed webhook), and shows that
every key was retired. A real PostgreSQL role when PostgreSQL answers on localhost; a random
value otherwise. No key value is ever printed: everything shown is masked as the runner masks.
"""

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


# Repeated on purpose: argparse declarations, one add_argument per option.
def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = subparsers.add_parser(
        "sandbox",
        help="run a local GitHub API stand-in (secrets, environments, deploy keys, App, OIDC)",
        description=SANDBOX,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sandbox.add_argument(
        "--port", type=int, default=0, help="loopback port to listen on (default: a free one)"
    )
    sandbox.add_argument(
        "--repository",
        action="append",
        metavar="OWNER/NAME",
        help=f"a repository to create (repeatable; default {DEFAULT_REPOSITORY})",
    )
    sandbox.add_argument("--app-id", type=int, help="the GitHub App's id (default: generated)")
    sandbox.add_argument("--webhook-secret", help="the App's webhook secret (default: random)")
    sandbox.add_argument(
        "--webhook-url",
        metavar="URL",
        help="the service's webhook URL (e.g. http://127.0.0.1:8080/webhook): complete-run and "
        "close-pr deliver there, signed; its origin is the service's URL and OIDC audience",
    )
    sandbox.add_argument(
        "--env-file",
        metavar="FILE",
        type=Path,
        help="write the export lines to FILE (mode 0600) for another shell's `. FILE`; "
        "secret values are then not printed",
    )
    sandbox.add_argument(
        "--pull-request",
        type=int,
        default=1,
        metavar="NUMBER",
        help="the pull request whose run is seeded (default 1)",
    )
    sandbox.add_argument(
        "--keys",
        metavar="FILE",
        help="dry-run this `keys` spec (- for stdin): mint, deliver and retire it through the "
        "action and a local runkeys service, print what went where and every GitHub API call, "
        "then exit (connections come from your RUNKEYS_CONNECTION_* variables)",
    )
    sandbox.add_argument(
        "--environment",
        default="ci-pr-{pr}",
        metavar="TEMPLATE",
        help="with --keys: the action's `environment` input (default ci-pr-{pr}; '' for job only)",
    )
    sandbox.add_argument(
        "--secondary-limits",
        action="store_true",
        help="enforce GitHub's secondary rate limits too (80 writes a minute, 500 an hour, 900 "
        "points a minute, 100 concurrent requests), answering 403 with Retry-After",
    )
    sandbox.add_argument(
        "--time-factor",
        type=float,
        default=1.0,
        metavar="N",
        help="run GitHub's rate-limit time N times faster (60: a GitHub minute a second)",
    )
    sandbox.add_argument(
        "--service-url",
        metavar="URL",
        help="with --keys: run the action's main step against this running service and the "
        "stand-in of your environment (GITHUB_API_URL…, from `. FILE`), and leave its keys "
        "for complete-run and close-pr to retire",
    )
    sandbox.set_defaults(func=sandbox_main)
    control = sandbox.add_subparsers(dest="sandbox_command", metavar="COMMAND")
    complete = control.add_parser(
        "complete-run",
        help="end a run in the running stand-in; it delivers workflow_run completed",
        description="End a workflow run in the running stand-in (GITHUB_API_URL); with "
        "--webhook-url, the stand-in sends the service `workflow_run` `completed`, signed.",
    )
    complete.add_argument("--run", type=int, metavar="ID", help="default: $GITHUB_RUN_ID")
    complete.add_argument(
        "--conclusion", default="success", help="the run's conclusion (default success)"
    )
    complete.set_defaults(func=complete_run_main)
    close = control.add_parser(
        "close-pr",
        help="close a pull request in the running stand-in; it delivers pull_request closed",
        description="Close a pull request in the running stand-in (GITHUB_API_URL); with "
        "--webhook-url, the stand-in sends the service `pull_request` `closed`, signed.",
    )
    close.add_argument("number", type=int, metavar="NUMBER", help="the pull request's number")
    close.add_argument("--merged", action="store_true", help="closed by merging it")
    close.add_argument("--repository", metavar="OWNER/NAME", help="default: the one its run is in")
    close.set_defaults(func=close_pr_main)

    demo = subparsers.add_parser(
        "demo",
        help="watch runkeys mint, deliver and retire keys, all on this machine",
        description=DEMO,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("RUNKEYS_DEMO_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a PostgreSQL account that may create roles (default: $RUNKEYS_DEMO_POSTGRES_URL "
        f"or {DEFAULT_POSTGRES_URL}); without one the second key is a random value",
    )
    demo.set_defaults(func=demo_main)


def check_arguments(port: int, names: list[str]) -> None:
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


def sandbox_main(args: argparse.Namespace) -> int:
    # Imported here: the server needs Werkzeug, and `runkeys --help` should not load it.
    from runkeys_sandbox.server.seeded import (  # noqa: PLC0415
        print_contents,
        print_environment,
        start_seeded,
    )

    if args.keys is not None and args.service_url is not None:
        from runkeys_sandbox.demo.step import run_step  # noqa: PLC0415

        return run_step(args.keys, args.environment, args.service_url, os.environ, sys.stdout)
    if args.keys is not None:
        from runkeys_sandbox.demo.dryrun import dry_run  # noqa: PLC0415

        return dry_run(args.keys, args.environment)
    names = args.repository or [DEFAULT_REPOSITORY]
    check_arguments(args.port, names)
    if not args.time_factor > 0:
        raise ConfigError("--time-factor", f"{args.time_factor} is not > 0", fix="e.g. 60")
    check_webhook_url(args.webhook_url)
    # `kill PID` (a background job's end) stops it as Ctrl-C does: the temporary directory, which
    # holds the App's private key, goes with it.
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="runkeys-sandbox-") as tmp:
        seeded = start_seeded(
            Path(tmp),
            port=args.port,
            repositories=names,
            app_id=args.app_id,
            webhook_secret=args.webhook_secret,
            webhook_url=args.webhook_url,
            pull_request=args.pull_request,
        )
        if args.secondary_limits or args.time_factor != 1.0:
            from runkeys_sandbox.server.ratelimit import SecondaryLimits  # noqa: PLC0415

            seeded.sandbox.enforce_rate_limits(
                SecondaryLimits() if args.secondary_limits else None, time_factor=args.time_factor
            )
        try:
            print_environment(seeded, sys.stdout, args.env_file)
            threading.Event().wait()  # until Ctrl-C
        except KeyboardInterrupt:
            print("runkeys sandbox: stopped. It held:", file=sys.stderr)
            print_contents(seeded, sys.stderr)
        finally:
            seeded.sandbox.stop()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def check_webhook_url(url: str | None) -> None:
    if url is None:
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "--webhook-url",
            f"{url!r} is not an http(s) URL",
            fix="e.g. http://127.0.0.1:8080/webhook",
        )


def complete_run_main(args: argparse.Namespace) -> int:
    from runkeys_sandbox.demo.control import complete_run  # noqa: PLC0415 (see sandbox_main)

    return complete_run(os.environ, args.run, args.conclusion, sys.stdout)


def close_pr_main(args: argparse.Namespace) -> int:
    from runkeys_sandbox.demo.control import close_pull_request  # noqa: PLC0415

    return close_pull_request(os.environ, args.number, args.merged, args.repository, sys.stdout)


def demo_main(args: argparse.Namespace) -> int:
    from runkeys_sandbox.demo.story import tell  # noqa: PLC0415 (see sandbox_main)

    return tell(args.postgres, sys.stdout)
