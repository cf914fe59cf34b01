"""`runkeys sandbox --keys FILE`: a dry run of a user's own `keys` spec, offline.

The spec runs through the real action against a seeded sandbox and a local runkeys service, as a
step of a pull request's run; it prints what was written where and the GitHub API calls made,
then retires everything and says how each key went. Exit status 1 when a key cannot be issued."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from runkeys.connections import PREFIX, env_var, load_connections
from runkeys.errors import ConfigError, SpecError
from runkeys.spec import SpecRules, load_yaml, parse_keys
from runkeys_sandbox.demo.report import Narrator
from runkeys_sandbox.demo.runner import StepRun
from runkeys_sandbox.demo.stack import Stack, StackError, retired_by, wait_until
from runkeys_sandbox.server.recording import RecordedRequest

SETTLE_TIMEOUT = 60.0  # seconds for the service to retire everything


def read_spec(path: str, stdin: TextIO) -> str:
    if path == "-":
        return stdin.read()
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as exc:
        raise ConfigError(
            "--keys", f"{path} cannot be read ({exc.strerror})", fix="name a YAML file, or -"
        ) from None


def missing_connections(text: str, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(key, RUNKEYS_CONNECTION_<NAME>) for each key whose connection is not in `environ`."""
    try:
        document = load_yaml(text)
    except SpecError:
        return []  # the action reports broken YAML itself
    if not isinstance(document, Mapping):
        return []
    known = load_connections({k: v for k, v in environ.items() if k.upper().startswith(PREFIX)})
    missing = []
    for key, body in document.items():
        connection = body.get("connection") if isinstance(body, Mapping) else None
        if isinstance(connection, str) and connection.strip():
            variable = env_var(connection)
            if variable.removeprefix(PREFIX) not in known:
                missing.append((str(key), variable))
    return missing


def dry_run(spec: str, environment: str, out: TextIO | None = None) -> int:
    """Dry-run the `keys` spec in file `spec` (- for stdin) with the action's `environment`."""
    say = Narrator(out or sys.stdout)
    text = read_spec(spec, sys.stdin)
    say.title(f"runkeys sandbox --keys {spec}: a dry run against a local GitHub stand-in")
    connections = {k: v for k, v in os.environ.items() if k.upper().startswith(PREFIX)}
    for key, variable in missing_connections(text, os.environ):
        say.line(
            f"Missing connection: keys.{key} needs {variable}, which is not set in your "
            "environment. A dry run mints for real, through your own connections: set it to "
            "the URL or DSN of an account that may mint such keys, and run again:"
        )
        say.block([f"export {variable}='<URL or DSN>'"])
    valid = _valid_offline(text, connections)
    with Stack(connections) as stack:
        say.masker = stack.job.masker
        return DryRun(stack, say, environment).run(text, with_service=valid)


def _valid_offline(text: str, connections: Mapping[str, str]) -> bool:
    """The checks the action makes before anything else (it will say what is wrong)."""
    try:
        parse_keys(text, SpecRules(connections=load_connections(connections), pull_request=True))
    except (SpecError, ConfigError):
        return False
    return True


class DryRun:
    def __init__(self, stack: Stack, say: Narrator, environment: str) -> None:
        self.stack, self.say, self.environment = stack, say, environment
        self.seen = 0  # requests of the sandbox's log already shown

    def run(self, text: str, *, with_service: bool) -> int:
        say, seeded = self.say, self.stack.seeded
        say.heading(
            f"The sandbox listens at {seeded.sandbox.url} with {seeded.repositories[0].full_name}, "
            f"the App installed, and pull request #{self.stack.pull_request}'s run in progress."
        )
        inputs = self.inputs(text, with_service)
        say.heading(f"The action runs the spec ({self._where()}):")
        main = self.stack.job.run(inputs, on_line=say.log)
        if main.returncode != 0:
            return self.failed(main)
        self.written(main)
        self.calls("The GitHub API calls made (by the action, and the service's checks):")
        try:
            self.retire(main, inputs)
        finally:
            self.calls("The GitHub API calls made while retiring:")
        return 0

    def inputs(self, text: str, with_service: bool) -> dict[str, str]:
        if with_service:
            self.stack.start_service()
            return self.stack.action_inputs(text, environment=self.environment)
        # The action refuses the spec before it needs GitHub or the service.
        return {"keys": text, "environment": self.environment}

    def _where(self) -> str:
        if not self.environment:
            return "no `environment`: the keys are for the job only"
        return f"environment: {self.environment}, as a step of a pull request's run"

    def failed(self, main: StepRun) -> int:
        self.say.line(
            f"The step failed, as it would on GitHub (exit status {main.returncode}): the "
            "action issues every key or none, so nothing it minted is left. Its error is above."
        )
        return 1

    def written(self, main: StepRun) -> None:
        self.say.heading("What was written where (values masked, as everywhere):")
        for key in main.issued_keys():
            where = {
                "job": "the job only",
                "repository": "a repository secret",
                "environment": f"a secret of environment {key['environment']}",
            }[str(key["scope"])]
            variables = ", ".join(str(v) for v in key["variables"])
            self.say.block(
                [
                    f"{key['name']}: {key['provider']}, lifetime {key['lifetime']}, expires "
                    f"{key['expires_at']}, {where}",
                    f"    job variables and step outputs: {variables}",
                ]
            )

    def calls(self, heading: str) -> None:
        requests = self.stack.seeded.sandbox.requests
        shown = [r for r in requests[self.seen :] if not r.path.startswith("/_services/")]
        self.seen = len(requests)
        self.say.heading(heading)
        self.say.block(_call_lines(shown) or ["(none)"])

    def retire(self, main: StepRun, inputs: dict[str, str]) -> None:
        say, stack = self.say, self.stack
        say.heading(
            "Retiring everything: the job's post step, the run completing, the pull "
            "request closing (signed webhooks):"
        )
        stack.job.run(inputs, post_of=main, on_line=say.log)
        for what, delivered in (
            ("The run completed", stack.complete_run()),
            ("The pull request closed", stack.close_pull_request()),
        ):
            queued = delivered.json().get("queued")
            say.line(f"{what}: the service answered {delivered.status_code}, {queued} queued.")
        ids = {str(key["lease_id"]) for key in main.issued_keys()}
        leases = self._settled(ids)
        failed = []
        for lease in leases:
            state = lease["state"]
            say.line(f"{lease['key_name']}: {state} ({retired_by(lease)}).")
            if state != "revoked":
                failed.append(f"{lease['key_name']}: {lease.get('last_error') or state}")
        if failed:
            raise StackError("not every key could be retired: " + "; ".join(failed))
        sandbox, repo = stack.seeded.sandbox, stack.seeded.repositories[0]
        left = sandbox.secret_names(repo) + sandbox.environment_names(repo)
        say.line(
            f"Done: {len(leases)} key(s) minted, delivered and retired"
            + (
                f"; still in the sandbox: {', '.join(left)}."
                if left
                else "; the sandbox holds no secret and no environment any more."
            )
        )

    def _settled(self, ids: set[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        def settled() -> bool:
            found[:] = [lease for lease in self.stack.leases() if lease["id"] in ids]
            return len(found) == len(ids) and all(
                lease["state"] in ("revoked", "failed") for lease in found
            )

        wait_until(settled, timeout=SETTLE_TIMEOUT, what="the service to retire every key")
        return sorted(found, key=lambda lease: str(lease["key_name"]))


def _call_lines(calls: Sequence[RecordedRequest]) -> list[str]:
    width = max((len(r.path) for r in calls), default=0)
    return [f"{r.method:<6} {r.path:<{width}}  {r.status}  ({r.caller})" for r in calls]
