"""`runkeys-action`: the main step. Everything is read and checked first
(`action_src.plan.plan_step`, which needs neither GitHub nor the network), then
`action_src.mint` issues the keys."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from types import FrameType
from typing import TextIO

from action_src.plan import is_broker_mode, plan_broker, plan_step
from action_src.workflow import Workflow, unexpected
from runkeys.connections import connection_secrets
from runkeys.errors import RunkeysError


def _interrupted(signum: int, frame: FrameType | None) -> None:
    # A cancelled job stops the container: turn that into an exception so rollback runs.
    raise KeyboardInterrupt(f"signal {signum}")


def run(environ: Mapping[str, str], workflow: Workflow) -> int:
    if is_broker_mode(environ):
        from action_src.brokered import mint_brokered  # noqa: PLC0415

        return mint_brokered(plan_broker(environ, workflow), workflow)
    plan = plan_step(environ, workflow)
    # PyGithub takes most of a second to import; a step that fails its checks never needs it.
    from action_src.mint import mint  # noqa: PLC0415

    return mint(plan, workflow)


def main(environ: Mapping[str, str] | None = None, stdout: TextIO | None = None) -> int:
    environ = os.environ if environ is None else environ
    workflow = Workflow(environ, stdout or sys.stdout)
    # Before anything can print: a connection's password must be masked before any message
    # (a driver's, a refusal's) could quote it.
    workflow.hide(connection_secrets(environ))
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        return run(environ, workflow)
    except RunkeysError as exc:
        return workflow.die(exc)
    except KeyboardInterrupt:
        return workflow.die(RunkeysError("the step was cancelled; minted keys were rolled back"))
    except Exception as exc:  # a bug; values were scrubbed by issuance if any existed
        return workflow.die(unexpected(exc))


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
