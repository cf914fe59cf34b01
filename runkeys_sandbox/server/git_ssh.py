"""Git over SSH as GitHub serves it, so a deploy key can be used for real: `git clone
ssh://git@127.0.0.1:PORT/owner/repo.git` works while the key is a deploy key of that repository.

As GitHub does: the user is `git`, any known key passes SSH authentication, the repository is
checked when the command arrives (`ERROR: Repository not found.`), and a read-only key cannot
push. Deploy keys:
https://docs.github.com/authentication/connecting-to-github-with-ssh/managing-deploy-keys"""

from __future__ import annotations

import io
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

from runkeys_sandbox.server.state import DeployKey, Repository, World

SERVICES = ("git-upload-pack", "git-receive-pack")
NOT_FOUND = "ERROR: Repository not found.\n"
READ_ONLY = "ERROR: The key you are authenticating with has been marked as read only.\n"
UNKNOWN_COMMAND = (
    "Invalid command: {command}\n  You appear to be using ssh to clone a git:// URL.\n"
)
INITIAL_COMMIT_DATE = "2026-01-01T00:00:00Z"


@dataclass(frozen=True)
class GitSession:
    """One SSH command the server saw: who, what, and whether it was served."""

    key: str  # "<type> <base64>" of the client's key
    repository: str | None
    service: str | None
    allowed: bool
    exit_status: int | None = None


@dataclass(frozen=True)
class _Grant:
    service: str
    repo: Repository
    deploy_key: DeployKey


@dataclass(frozen=True)
class _Refusal:
    message: str
    repository: str | None = None
    service: str | None = None


class _Interface(paramiko.ServerInterface):
    """Authentication and the exec request of one SSH connection."""

    def __init__(self, known: Callable[[str], bool]) -> None:
        self._known = known
        self.key: str | None = None
        self.command: str | None = None
        self.environment: dict[str, str] = {}
        self.ready = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        text = f"{key.get_name()} {key.get_base64()}"
        if username == "git" and self._known(text):
            self.key = text
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return OPEN_SUCCEEDED
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_env_request(
        self, channel: paramiko.Channel, name: bytes, value: bytes
    ) -> bool:
        if name == b"GIT_PROTOCOL":  # git asks for protocol v2 this way (SendEnv)
            self.environment["GIT_PROTOCOL"] = value.decode(errors="replace")
            return True
        return False

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.command = command.decode(errors="replace")
        self.ready.set()
        return True


class GitSSHServer:
    """An SSH server on a loopback port serving the sandbox's repositories to deploy keys."""

    def __init__(self, world: World, host: str = "127.0.0.1", port: int = 0) -> None:
        self.world = world
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.2)
        self._root = Path(tempfile.mkdtemp(prefix="runkeys-sandbox-git-"))
        self._host_key = _ed25519_host_key()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.sessions: list[GitSession] = []
        self._thread = threading.Thread(
            target=self._accept_loop, name="runkeys-git-ssh", daemon=True
        )

    @property
    def host(self) -> str:
        return str(self._listener.getsockname()[0])

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def url(self, repo: Repository) -> str:
        """What `git clone` takes: `ssh://git@127.0.0.1:PORT/owner/repo.git`."""
        return f"ssh://git@{self.host}:{self.port}/{repo.full_name}.git"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()
        shutil.rmtree(self._root, ignore_errors=True)

    # -- repositories ---------------------------------------------------------------------------

    def repository_path(self, repo: Repository) -> Path:
        """The bare repository behind `repo`, created with one commit on first use."""
        path = self._root / repo.owner.lower() / f"{repo.name.lower()}.git"
        with self._lock:
            if not path.exists():
                _create_bare_repository(path, repo)
        return path

    # -- connections ----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _known_key(self, key: str) -> bool:
        with self.world.lock:
            return any(
                k.key == key
                for r in self.world.repositories.values()
                for k in r.deploy_keys.values()
            )

    def _serve(self, connection: socket.socket) -> None:
        transport = paramiko.Transport(connection)
        try:
            transport.add_server_key(self._host_key)
            interface = _Interface(self._known_key)
            transport.start_server(server=interface)
            channel = transport.accept(timeout=10)
            if channel is None or not interface.ready.wait(timeout=10):
                return
            self._run(channel, interface)
            _wait_for_client_to_leave(transport)
        except (paramiko.SSHException, EOFError, OSError):
            return  # the client went away or spoke nonsense: nothing to answer
        finally:
            transport.close()

    def _run(self, channel: paramiko.Channel, interface: _Interface) -> None:
        key, command = interface.key or "", interface.command or ""
        decision = self._authorize(key, command)
        if isinstance(decision, _Refusal):
            channel.sendall_stderr(decision.message.encode())
            session = GitSession(key, decision.repository, decision.service, False, 1)
            self._finish(channel, session)
            return
        path = self.repository_path(decision.repo)
        status = _pump(channel, [decision.service, str(path)], interface.environment)
        with self.world.lock:
            decision.deploy_key.last_used = self.world.now()
        session = GitSession(key, decision.repo.full_name, decision.service, True, status)
        self._finish(channel, session)

    def _authorize(self, key: str, command: str) -> _Grant | _Refusal:
        """What GitHub decides for an exec command from a deploy key."""
        try:
            words = shlex.split(command)
        except ValueError:
            words = []
        if len(words) == 3 and words[0] == "git":  # "git upload-pack '…'"
            words = [f"git-{words[1]}", words[2]]
        if len(words) != 2 or words[0] not in SERVICES:
            return _Refusal(UNKNOWN_COMMAND.format(command=command))
        service, target = words
        owner, _, name = target.strip("/").removesuffix(".git").partition("/")
        with self.world.lock:
            repo = self.world.repository(owner, name) if owner and name else None
            keys = repo.deploy_keys.values() if repo else ()
            deploy_key = next((k for k in keys if k.key == key), None)
        if repo is None or deploy_key is None:
            return _Refusal(NOT_FOUND, repo.full_name if repo else None, service)
        if service == "git-receive-pack" and deploy_key.read_only:
            return _Refusal(READ_ONLY, repo.full_name, service)
        return _Grant(service, repo, deploy_key)

    def _finish(self, channel: paramiko.Channel, session: GitSession) -> None:
        with self._lock:
            self.sessions.append(session)
        channel.send_exit_status(session.exit_status if session.exit_status is not None else 1)
        channel.shutdown_write()
        channel.close()


def _pump(channel: paramiko.Channel, argv: list[str], environment: dict[str, str]) -> int:
    """Run a git service with the channel as its stdin, stdout and stderr; its exit status."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent", **environment}
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    stdin, stdout, stderr = process.stdin, process.stdout, process.stderr
    assert stdin is not None
    assert stdout is not None
    assert stderr is not None

    def feed() -> None:
        try:
            while data := channel.recv(65536):
                stdin.write(data)
                stdin.flush()
        except (OSError, EOFError):
            pass
        finally:
            stdin.close()

    def drain(source: io.BufferedReader, send: Callable[[bytes], None]) -> None:
        while data := source.read1(65536):
            send(data)

    threading.Thread(target=feed, daemon=True).start()
    readers = [
        threading.Thread(target=drain, args=(stdout, channel.sendall), daemon=True),
        threading.Thread(target=drain, args=(stderr, channel.sendall_stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    return process.wait()


def _wait_for_client_to_leave(transport: paramiko.Transport, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while transport.is_active() and time.monotonic() < deadline:
        time.sleep(0.02)


def _ed25519_host_key() -> paramiko.PKey:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return paramiko.Ed25519Key(file_obj=io.StringIO(pem.decode()))


def _create_bare_repository(path: Path, repo: Repository) -> None:
    """A bare repository whose default branch has one commit with a README (reproducible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(path.parent),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "runkeys sandbox",
        "GIT_AUTHOR_EMAIL": "sandbox@runkeys.invalid",
        "GIT_AUTHOR_DATE": INITIAL_COMMIT_DATE,
        "GIT_COMMITTER_NAME": "runkeys sandbox",
        "GIT_COMMITTER_EMAIL": "sandbox@runkeys.invalid",
        "GIT_COMMITTER_DATE": INITIAL_COMMIT_DATE,
    }

    def git(*args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            ["git", "-C", str(path), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        return result.stdout.strip()

    subprocess.run(
        ["git", "init", "--quiet", "--bare", f"--initial-branch={repo.default_branch}", str(path)],
        check=True,
        env=env,
    )
    blob = git(
        "hash-object",
        "-w",
        "--stdin",
        stdin=f"# {repo.full_name}\n\nServed by the runkeys sandbox.\n",
    )
    tree = git("mktree", stdin=f"100644 blob {blob}\tREADME.md\n")
    commit = git("commit-tree", tree, "-m", "Initial commit")
    git("update-ref", f"refs/heads/{repo.default_branch}", commit)
