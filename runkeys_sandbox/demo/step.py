"""`runkeys sandbox --keys FILE --service-url URL`: the action's main step, as a step of the
running stand-in's seeded run, registering its leases with a running service. Everything comes
from the environment `runkeys sandbox` exported (`. FILE`): the stand-in, the run, the App and
the job's OIDC request token. No post step: the keys stay until the run completes or the pull
request closes (`runkeys sandbox complete-run`, `close-pr`), or their TTL ends."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from runkeys.errors import ConfigError
from runkeys_sandbox.demo.dryrun import read_spec
from runkeys_sandbox.demo.report import Narrator
from runkeys_sandbox.demo.runner import Job

NEEDED = (
    "GITHUB_API_URL",
    "GITHUB_REPOSITORY",
    "GITHUB_RUN_ID",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "RUNKEYS_APP_ID",
    "RUNKEYS_PRIVATE_KEY_FILE",
)
# What the runner gives a step, from the exported environment; the rest (the service's own
# settings, the webhook secret) is not the job's.
PASSED = ("GITHUB_", "ACTIONS_ID_TOKEN_REQUEST_", "RUNKEYS_CONNECTION_")
BASICS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE")


def step_environment(environ: Mapping[str, str], workdir: Path) -> dict[str, str]:
    missing = [name for name in NEEDED if not environ.get(name)]
    if missing:
        raise ConfigError(
            missing[0],
            "is not set: --service-url runs a step of the running sandbox's run",
            fix="start `runkeys sandbox --env-file FILE` and source it (. ./FILE) first",
        )
    env = {k: v for k, v in environ.items() if k.startswith(PASSED) or k in BASICS}
    env.pop("GITHUB_TOKEN", None)  # the App writes the secrets; the runner passes no token
    env.update(GITHUB_ACTIONS="true", CI="true", GITHUB_WORKSPACE=str(workdir))
    return env


def run_step(
    spec: str, environment: str, service_url: str, environ: Mapping[str, str], out: TextIO
) -> int:
    say = Narrator(out)
    text = read_spec(spec, sys.stdin)
    with tempfile.TemporaryDirectory(prefix="runkeys-step-") as tmp:
        env = step_environment(environ, Path(tmp))
        try:
            private_key = Path(environ["RUNKEYS_PRIVATE_KEY_FILE"]).read_text()
        except OSError as exc:
            raise ConfigError(
                "RUNKEYS_PRIVATE_KEY_FILE",
                f"cannot be read ({exc.strerror})",
                fix="is the sandbox that wrote it still running?",
            ) from None
        inputs = {
            "keys": text,
            "environment": environment,
            "app-id": environ["RUNKEYS_APP_ID"],
            "private-key": private_key,
            "service-url": service_url,
            "audience": environ.get("RUNKEYS_OIDC_AUDIENCE", ""),
        }
        job = Job(Path(tmp) / "job", env)
        say.masker = job.masker
        say.title(f"The action's step, run {env['GITHUB_RUN_ID']} of {env['GITHUB_REPOSITORY']}")
        main = job.run(inputs, on_line=say.log)
        if main.returncode != 0:
            say.line(f"The step failed (exit status {main.returncode}); nothing it minted is left.")
            if main.stderr.strip():
                say.block(main.stderr.strip().splitlines()[-10:])
            return 1
        for key in main.issued_keys():
            say.line(
                f"{key['name']}: {key['provider']}, lifetime {key['lifetime']}, lease "
                f"{key['lease_id']}, expires {key['expires_at']}"
            )
        say.line(
            "Registered with the service: it retires `run` keys when the run completes "
            "(runkeys sandbox complete-run) and `pr` keys when the pull request closes "
            "(runkeys sandbox close-pr NUMBER)."
        )
    return 0
