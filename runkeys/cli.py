"""The `runkeys` command. Each group of subcommands lives with what it drives and is imported
only when used, so the action image (no service extras) can still run `runkeys --help`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from runkeys import __version__
from runkeys.errors import RunkeysError

# Modules that define `register(subparsers)`; each subcommand sets `func` to run it.
COMMAND_MODULES = (
    "runkeys_sandbox.cli",  # sandbox, demo (the `sandbox` extra)
    "handler.cli",  # serve, worker, sweep, leases, revoke
    "handler.app_manifest",  # app create, app exchange
)
SANDBOX_COMMANDS = ("sandbox", "demo")
SANDBOX_MISSING = (
    "runkeys {command}: the GitHub stand-in and the demo are not installed; "
    "install them with: pip install 'runkeys[sandbox]'"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runkeys",
        description="Fresh, short-lived provisioning keys for integration tests on GitHub Actions.",
    )
    parser.add_argument("--version", action="version", version=f"runkeys {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # an extra that is not installed: its commands are absent
            if exc.name == "runkeys_sandbox":  # a distribution of its own: say how to get it
                _register_missing_sandbox(subparsers)
                continue
            if exc.name and not exc.name.startswith(("runkeys", "handler")):
                continue
            if exc.name == name:
                continue
            raise
        module.register(subparsers)
    return parser


def _register_missing_sandbox(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """`sandbox` and `demo` still parse, whatever their arguments, to say how to get them."""
    for command in SANDBOX_COMMANDS:
        # No option prefix: `--help` and the real command's options land in `rest` too.
        parser = subparsers.add_parser(
            command,
            help="(not installed: pip install 'runkeys[sandbox]')",
            add_help=False,
            prefix_chars="\0",
        )
        parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
        parser.set_defaults(func=lambda _args, command=command: _sandbox_missing(command))


def _sandbox_missing(command: str) -> int:
    print(SANDBOX_MISSING.format(command=command), file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except RunkeysError as exc:
        print(f"runkeys: {exc.title}: {exc.explain()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
