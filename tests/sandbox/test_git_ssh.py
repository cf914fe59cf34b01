"""A deploy key used for real: `git clone` over SSH with a key made by `ssh-keygen`, through the
sandbox, while the key is registered, and refused once it is deleted."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from runkeys_sandbox.server.git_ssh import GitSSHServer
from tests.sandbox.conftest import Seeded
from tests.services import skip_or_fail


@pytest.fixture(autouse=True)
def _tools() -> None:
    if not (shutil.which("ssh") and shutil.which("ssh-keygen") and shutil.which("git")):
        skip_or_fail("the git-over-SSH tests need the OpenSSH client, ssh-keygen and git")


def keygen(directory: Path, name: str = "deploy") -> Path:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@runkeys", "-f", str(key)],
        check=True,
    )
    return key


def git(key: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(key.parent),
        "GIT_SSH_COMMAND": (
            f"ssh -i {key} -o IdentitiesOnly=yes -o BatchMode=yes "
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        ),
        "GIT_TERMINAL_PROMPT": "0",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def git_ssh(seeded: Seeded) -> GitSSHServer:
    return seeded.sb.start_git_ssh()


def test_clone_with_a_deploy_key_until_it_is_deleted(
    seeded: Seeded, git_ssh: GitSSHServer, tmp_path: Path
) -> None:
    key = keygen(tmp_path)
    repo = seeded.github().get_repo("octo/app")
    deploy_key = repo.create_key("runkeys", key.with_suffix(".pub").read_text(), read_only=True)
    url = git_ssh.url(seeded.repo)
    assert url == f"ssh://git@127.0.0.1:{git_ssh.port}/octo/app.git"
    cloned = git(key, "clone", "--quiet", url, str(tmp_path / "clone"))
    assert cloned.returncode == 0, cloned.stderr
    assert (tmp_path / "clone" / "README.md").read_text().startswith("# octo/app")
    assert seeded.sb.deploy_keys(seeded.repo)[0]["last_used"] is not None
    (session,) = git_ssh.sessions
    assert (session.repository, session.service, session.allowed) == (
        "octo/app",
        "git-upload-pack",
        True,
    )

    deploy_key.delete()
    refused = git(key, "clone", "--quiet", url, str(tmp_path / "again"))
    assert refused.returncode != 0
    assert "Permission denied (publickey)" in refused.stderr
    assert not (tmp_path / "again").exists()


def test_a_key_of_another_repository_finds_nothing(
    seeded: Seeded, git_ssh: GitSSHServer, tmp_path: Path
) -> None:
    other = seeded.sb.add_repository("octo/other")
    key = keygen(tmp_path)
    token = seeded.sb.add_token([other], {"administration": "write"})
    seeded.api(
        "POST", "/repos/octo/other/keys", token, json={"key": key.with_suffix(".pub").read_text()}
    )
    refused = git(key, "clone", git_ssh.url(seeded.repo), str(tmp_path / "clone"))
    assert refused.returncode != 0
    assert "ERROR: Repository not found." in refused.stderr
    allowed = git(key, "ls-remote", git_ssh.url(other))
    assert allowed.returncode == 0, allowed.stderr
    assert "refs/heads/main" in allowed.stdout


def test_read_only_keys_cannot_push_and_write_keys_can(
    seeded: Seeded, git_ssh: GitSSHServer, tmp_path: Path
) -> None:
    repo = seeded.github().get_repo("octo/app")
    reader, writer = keygen(tmp_path, "reader"), keygen(tmp_path, "writer")
    repo.create_key("reader", reader.with_suffix(".pub").read_text(), read_only=True)
    repo.create_key("writer", writer.with_suffix(".pub").read_text(), read_only=False)
    work = tmp_path / "work"
    assert git(reader, "clone", "--quiet", git_ssh.url(seeded.repo), str(work)).returncode == 0
    (work / "new.txt").write_text("pushed through the sandbox\n")
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    assert git(reader, *identity, "add", "new.txt", cwd=work).returncode == 0
    assert git(reader, *identity, "commit", "-q", "-m", "change", cwd=work).returncode == 0
    pushed_read_only = git(reader, "push", "-q", "origin", "main", cwd=work)
    assert pushed_read_only.returncode != 0
    assert "marked as read only" in pushed_read_only.stderr
    pushed = git(writer, "push", "-q", "origin", "main", cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    log = subprocess.run(
        ["git", "-C", str(git_ssh.repository_path(seeded.repo)), "log", "--format=%s", "main"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert log.stdout.split() == ["change", "Initial", "commit"]


def test_unknown_keys_and_commands_are_refused(
    seeded: Seeded, git_ssh: GitSSHServer, tmp_path: Path
) -> None:
    stranger = keygen(tmp_path, "stranger")
    refused = git(stranger, "ls-remote", git_ssh.url(seeded.repo))
    assert "Permission denied (publickey)" in refused.stderr
    key = keygen(tmp_path)
    seeded.github().get_repo("octo/app").create_key("k", key.with_suffix(".pub").read_text())
    shell = subprocess.run(
        [
            "ssh",
            "-i",
            str(key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-p",
            str(git_ssh.port),
            "git@127.0.0.1",
            "cat /etc/passwd",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert shell.returncode != 0
    assert "Invalid command" in shell.stderr
    assert "root:" not in shell.stdout
