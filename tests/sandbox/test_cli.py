"""`runkeys sandbox` as a user runs it: a real process, its printed environment, Ctrl-C."""

from __future__ import annotations

import os
import shlex
import signal
import stat
import subprocess
from pathlib import Path

import requests
from github import Auth, GithubIntegration

from tests.e2e.commands import INTERACTIVE_COMMAND

COMMAND = [*INTERACTIVE_COMMAND, "sandbox"]
HUSH = 'it\'s a $ecret `x` \\ "y"'  # every character a shell would read otherwise


def read_environment(process: subprocess.Popen[str]) -> dict[str, str]:
    """The `export NAME=value` lines it printed, read as a shell reads them."""
    env: dict[str, str] = {}
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("Serving until Ctrl-C"):
            return env
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").strip().partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    raise AssertionError(
        f"the sandbox stopped early: {process.stderr.read() if process.stderr else ''}"
    )


def test_serves_seeded_state_until_ctrl_c() -> None:
    process = subprocess.Popen(
        [
            *COMMAND,
            "--repository",
            "octo/app",
            "--repository",
            "other/lib",
            "--webhook-secret",
            HUSH,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        env = read_environment(process)
        key_file = Path(env["RUNKEYS_PRIVATE_KEY_FILE"])
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert env["RUNKEYS_WEBHOOK_SECRET"] == HUSH  # quoted for the shell, read back whole
        assert env["RUNKEYS_OIDC_AUDIENCE"] == "http://127.0.0.1:8080"  # `runkeys serve`'s
        auth = Auth.AppAuth(int(env["RUNKEYS_APP_ID"]), key_file.read_text())
        gi = GithubIntegration(base_url=env["GITHUB_API_URL"], auth=auth)
        assert (
            gi.get_repo_installation("octo", "app").id
            != gi.get_repo_installation("other", "lib").id
        )
        runs = requests.get(
            f"{env['GITHUB_API_URL']}/repos/octo/app/actions/runs/{env['GITHUB_RUN_ID']}",
            headers={"Authorization": f"Bearer {env['GITHUB_TOKEN']}"},
            timeout=10,
        )
        assert runs.json()["status"] == "in_progress"
        id_token = requests.get(
            env["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=x",
            headers={"Authorization": f"Bearer {env['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"},
            timeout=10,
        )
        assert id_token.status_code == 200
        token = gi.get_access_token(gi.get_repo_installation("octo", "app").id).token
        requests.put(
            f"{env['GITHUB_API_URL']}/repos/octo/app/environments/ci",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).raise_for_status()
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)  # generous: CI machines can be loaded
    assert process.returncode == 0, stderr
    assert "stopped" in stderr
    assert "environment ci: -" in stderr  # what it held, without values
    assert not key_file.exists()  # the temporary directory went with the process


def test_bad_arguments_are_explained() -> None:
    for args in (
        ["--repository", "no-slash"],
        ["--port", "70000"],
        ["--repository", "a/b", "--repository", "A/B"],
        ["--secondary-limits", "--time-factor", "0"],
    ):
        result = subprocess.run(
            [*COMMAND, *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
            env=os.environ,
        )
        assert result.returncode == 1, args
        assert "Invalid configuration" in result.stderr
        assert "How to fix" in result.stderr


def test_the_env_file_is_the_owners_alone_and_the_shell_reads_it_exactly(tmp_path: Path) -> None:
    env_file = tmp_path / "sandbox.env"
    env_file.write_text("stale\n")
    env_file.chmod(0o644)  # a file from an earlier run, readable by all: replaced, not reused
    process = subprocess.Popen(
        [
            *COMMAND,
            "--webhook-secret",
            HUSH,
            "--webhook-url",
            "http://127.0.0.1:9/webhook",
            "--env-file",
            str(env_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        printed = read_environment(process)
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        sourced = subprocess.run(
            ["sh", "-c", '. "$1" && env -0', "sh", str(env_file)],
            capture_output=True,
            check=True,
            env={"PATH": os.environ["PATH"]},
        ).stdout.decode()
        env = dict(item.split("=", 1) for item in sourced.split("\0") if "=" in item)
        assert env["RUNKEYS_WEBHOOK_SECRET"] == HUSH
        assert env["RUNKEYS_OIDC_AUDIENCE"] == "http://127.0.0.1:9"  # --webhook-url's origin
        assert env["GITHUB_EVENT_NAME"] == "pull_request"
        assert env["RUNKEYS_DATABASE_URL"].startswith("sqlite:///")
        secrets = [env[k] for k in ("GITHUB_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")] + [HUSH]
        # Printed: the same values, but for the secrets (the user asked for the file).
        names = [line.split("=")[0].removeprefix("export ") for line in env_file.open()]
        hidden = {"RUNKEYS_WEBHOOK_SECRET", "GITHUB_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"}
        assert hidden < set(names)
        assert printed == {k: env[k] for k in names if k not in hidden}
    finally:
        process.send_signal(signal.SIGTERM)  # `kill %1`, the doc's way to stop it
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    for value in secrets:
        assert value not in stdout + stderr
    assert not Path(env["RUNKEYS_PRIVATE_KEY_FILE"]).exists()
