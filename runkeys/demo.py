"""`runkeys demo`: the life of two CI keys on this machine, told as it happens.

It starts a GitHub stand-in (the sandbox) and the runkeys service, runs the action as a workflow
step would, then ends the job (the post step) and the run (a signed webhook), and shows that
every key was retired. A real PostgreSQL role when PostgreSQL answers on localhost; a random
value otherwise. No key value is ever printed: everything shown is masked as the runner masks.
"""

from __future__ import annotations

import argparse
import os
import sys

# Imported only when the demo runs: `runkeys --help` and the service's commands stay quick.
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="watch runkeys mint, deliver and retire keys, all on this machine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("RUNKEYS_DEMO_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a PostgreSQL account that may create roles (default: $RUNKEYS_DEMO_POSTGRES_URL "
        f"or {DEFAULT_POSTGRES_URL}); without one the second key is a random value",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from runkeys.demo_story import tell  # noqa: PLC0415 (see above)

    return tell(args.postgres, sys.stdout)
