"""`runkeys sandbox` as a user runs it: a real process, its printed environment, Ctrl-C."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import requests
from github import Auth, GithubIntegration

from tests.e2e.commands import INTERACTIVE_COMMAND

COMMAND = [*INTERACTIVE_COMMAND, "sandbox"]


def read_environment(process: subprocess.Popen[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("Serving until Ctrl-C"):
            return env
        name, sep, value = line.strip().partition("=")
        if sep and name.isupper():
            env[name] = value
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
            "hush",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        env = read_environment(process)
        key_file = Path(env["RUNKEYS_PRIVATE_KEY_FILE"])
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert env["RUNKEYS_WEBHOOK_SECRET"] == "hush"
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
