"""The service's image (service.Dockerfile), built with buildah on the local base and run as a
container runs it: the image's own entry point, user, environment and health check, the ledger
on a host directory mounted over its volume.

`buildah run --isolation chroot` shares the host's network (and process) namespace, so the
service binds a free loopback port, set through RUNKEYS_BIND, which the health check reads too.
Slow: the first run on a machine debootstraps the base (tests/images.py), every run builds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from handler.webhooks import sign
from runkeys import __version__
from runkeys_sandbox.launch import free_port
from tests.images import (
    BASE_IMAGE,
    built,
    codename,
    installed,
    installed_files,
    not_the_product,
    run_argv,
    working_container,
)
from tests.locks import SERVICE, parse
from tests.service import kit
from tests.service.conftest import postgres_database

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

UID = 10001  # service.Dockerfile's USER
LEDGER_DIR = "/var/lib/runkeys"  # its VOLUME, where its RUNKEYS_DATABASE_URL points
WEBHOOK_SECRET = "image-test-webhook-secret"
REQUIRED = (
    "RUNKEYS_WEBHOOK_SECRET",
    "RUNKEYS_APP_ID",
    "RUNKEYS_PRIVATE_KEY",
    "RUNKEYS_OIDC_AUDIENCE",
)


@dataclass(frozen=True)
class Image:
    tag: str
    config: dict[str, Any]
    working: str

    def argv(self, *args: str) -> list[str]:
        """The image's entry point with `args`, or with its CMD when none are given."""
        return [*self.config["Entrypoint"], *(args or self.config["Cmd"])]

    def run(
        self, argv: list[str], env: dict[str, str], volumes: dict[Path, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            run_argv(self.working, argv, env, volumes),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    with (
        built("service.Dockerfile", "runkeys-service") as (tag, config),
        working_container(tag) as working,
    ):
        yield Image(tag, config, working)


@pytest.fixture(scope="module")
def settings() -> dict[str, str]:
    """The settings a deployment gives the container (test values; GitHub on a closed loopback
    port, so nothing in these tests can reach out)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "RUNKEYS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "RUNKEYS_APP_ID": "4242",
        "RUNKEYS_PRIVATE_KEY": pem,
        "RUNKEYS_OIDC_AUDIENCE": "https://runkeys.example.test",
        "GITHUB_API_URL": f"http://127.0.0.1:{free_port()}",
    }


def ledger_volume(parent: Path) -> Path:
    """A host directory for the ledger's volume, owned by the image's user as a fresh named
    volume would be."""
    directory = parent / "ledger"
    directory.mkdir(mode=0o700)
    os.chown(directory, UID, UID)
    return directory


@dataclass
class Process:
    pid: int
    parent: int
    uid: int
    argv: list[str]


def session_processes(session: int) -> list[Process]:
    """Every process of a session: the container's share the host's process namespace."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            status = (proc / "status").read_text()
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
        except OSError:
            continue  # ended meanwhile
        if int(fields[3]) != session:
            continue
        uid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
        found.append(Process(int(proc.name), int(fields[1]), uid, argv))
    return found


@dataclass
class Service:
    process: subprocess.Popen[bytes]  # `buildah run`, leader of its own session
    url: str
    bind: str
    log: Path
    volume: Path

    def servers(self) -> list[Process]:
        """gunicorn's master and its workers: `runkeys serve` processes."""
        return [
            p
            for p in session_processes(self.process.pid)
            if [Path(arg).name for arg in p.argv] == ["python3", "runkeys", "serve"]
        ]

    def master(self) -> Process:
        servers = self.servers()
        pids = {p.pid for p in servers}
        (master,) = [p for p in servers if p.parent not in pids]
        return master


@contextmanager
def serving(image: Image, env: dict[str, str], directory: Path) -> Iterator[Service]:
    """The image's entry point and CMD (`runkeys serve`), with the ledger on a volume, until
    it answers /readyz; killed when the block ends."""
    volume = ledger_volume(directory)
    bind = f"127.0.0.1:{free_port()}"
    log = directory / "service.log"
    argv = run_argv(
        image.working, image.argv(), {**env, "RUNKEYS_BIND": bind}, {volume: LEDGER_DIR}
    )
    with log.open("ab") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=sink, start_new_session=True)
    running = Service(process, f"http://{bind}", bind, log, volume)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the container exited:\n{log.read_text()[-3000:]}"
            try:
                if requests.get(f"{running.url}/readyz", timeout=3).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.2)
        else:
            raise AssertionError(f"the service did not get ready:\n{log.read_text()[-3000:]}")
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)


@pytest.fixture(scope="module")
def service(
    image: Image, settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    with serving(image, settings, tmp_path_factory.mktemp("served")) as running:
        yield running


def test_the_image_is_configured_as_documented(image: Image) -> None:
    config = image.config
    version = __version__
    assert config["Entrypoint"] == ["runkeys"]
    assert config["Cmd"] == ["serve"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    assert config["Volumes"] == {LEDGER_DIR: {}}
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["RUNKEYS_DATABASE_URL"] == f"sqlite:///{LEDGER_DIR}/runkeys.sqlite3"
    assert env["RUNKEYS_BIND"] == "0.0.0.0:8080"
    assert config["Healthcheck"]["Test"][:2] == ["CMD", "python"]  # exec form, no shell
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.title"] == "runkeys service"
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    assert labels["org.opencontainers.image.base.name"] == BASE_IMAGE.format(codename=codename())
    done = image.run(image.argv("--version"), {})
    assert (done.returncode, done.stdout.strip()) == (0, f"runkeys {version}")


def test_the_image_holds_no_compiler_pip_or_source(image: Image) -> None:
    probe = (
        "import glob, importlib.util as u, json, os, shutil; print(json.dumps({"
        "'tools': [t for t in ('cc', 'gcc', 'c++', 'g++', 'clang', 'tcc', 'ld', 'as', 'make', "
        "'pip', 'pip3') if shutil.which(t)] + glob.glob('/usr/bin/*-gcc*'), "
        "'modules': [m for m in ('pip', 'setuptools') if u.find_spec(m)], "
        "'source': os.path.exists('/opt/runkeys-src'), "
        "'service': [m for m in ('flask', 'gunicorn', 'sqlalchemy', 'psycopg') "
        "if not u.find_spec(m)], "
        "'uid': [os.getuid(), os.getgid()], 'cwd': os.getcwd()}))"
    )
    done = image.run(["python", "-c", probe], {})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "tools": [],
        "modules": [],
        "source": False,
        "service": [],  # the postgres extra: the service and its driver are all there
        "uid": [UID, UID],
        "cwd": LEDGER_DIR,
    }


def test_the_image_holds_its_lock_and_runkeys_and_nothing_else(image: Image) -> None:
    """By hash from requirements/service.txt; every distribution needed by runkeys[postgres]
    by its own metadata, none missing."""
    found = installed(image.working)
    assert found.versions["runkeys"] == __version__
    assert found.lock_problems(parse(SERVICE.text()), "runkeys", ("postgres",)) == []


def test_the_image_holds_neither_the_stand_in_nor_the_demo(image: Image) -> None:
    files = installed_files(image.working)
    assert any(name.endswith("/handler/app.py") for name in files)  # the listing is real
    assert not_the_product(files) == []
    done = image.run(image.argv("sandbox", "--port", "0"), {})
    assert done.returncode == 2, done.stderr
    assert "pip install 'runkeys[sandbox]'" in done.stderr


def test_the_service_answers_its_probes_as_its_user_with_the_ledger_on_the_volume(
    service: Service, settings: dict[str, str]
) -> None:
    assert requests.get(f"{service.url}/healthz", timeout=10).status_code == 200
    ready = requests.get(f"{service.url}/readyz", timeout=10)
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    servers = service.servers()
    assert len(servers) == 2  # gunicorn's master and one worker: the ledger is SQLite
    assert {p.uid for p in servers} == {UID}
    files = {path.name: path.stat() for path in service.volume.iterdir()}
    assert "runkeys.sqlite3" in files  # the default RUNKEYS_DATABASE_URL is on the volume
    assert {(s.st_uid, s.st_gid) for s in files.values()} == {(UID, UID)}
    log = service.log.read_text()
    assert settings["RUNKEYS_PRIVATE_KEY"].splitlines()[1] not in log
    assert WEBHOOK_SECRET not in log


def test_a_signed_ping_gets_200_and_a_forged_one_401(service: Service) -> None:
    body = json.dumps(kit.ping()).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, WEBHOOK_SECRET),
    }
    answer = requests.post(f"{service.url}/webhook", data=body, headers=headers, timeout=10)
    assert (answer.status_code, answer.json()) == (200, {"outcome": "pong", "queued": 0})
    headers["X-Hub-Signature-256"] = sign(body, "not the secret")
    forged = requests.post(f"{service.url}/webhook", data=body, headers=headers, timeout=10)
    assert forged.status_code == 401


def test_the_health_check_passes_while_the_service_lives(
    image: Image, service: Service, settings: dict[str, str]
) -> None:
    check = image.config["Healthcheck"]["Test"][1:]
    done = image.run(check, {"RUNKEYS_BIND": service.bind})
    assert done.returncode == 0, done.stderr
    nothing_there = image.run(check, {"RUNKEYS_BIND": f"0.0.0.0:{free_port()}"})
    assert nothing_there.returncode != 0
    assert "Connection refused" in nothing_there.stderr


def test_a_worker_runs_from_the_same_image_on_the_same_ledger(
    image: Image, service: Service, settings: dict[str, str]
) -> None:
    done = image.run(image.argv("worker", "--once"), settings, {service.volume: LEDGER_DIR})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"retired_or_attempted": 0}


def test_the_image_keeps_its_ledger_on_postgresql(
    image: Image, settings: dict[str, str], tmp_path: Path
) -> None:
    """The postgres extra at work: the container's own psycopg and SQLAlchemy migrate a new
    database (the container shares the host's network, so the test server is on loopback).
    `serve` creates the ledger; a worker started first refuses the empty database."""
    with postgres_database() as url:
        env = {**settings, "RUNKEYS_DATABASE_URL": url, "RUNKEYS_WORKER": "external"}
        refused = image.run(image.argv("worker", "--once"), env)
        assert refused.returncode == 1
        assert "holds no runkeys ledger (no schema)" in refused.stderr
        with serving(image, env, tmp_path):
            pass  # ready: migrated
        done = image.run(image.argv("worker", "--once"), env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.splitlines()[-1]) == {"retired_or_attempted": 0}
        plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(plain) as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                )
            }
        assert {"leases", "lease_events", "schema_migrations"} <= tables


@pytest.mark.parametrize("name", REQUIRED)
def test_a_missing_setting_stops_start_up_naming_it(
    image: Image, settings: dict[str, str], name: str, tmp_path: Path
) -> None:
    env = {key: value for key, value in settings.items() if key != name}
    done = image.run(image.argv(), env, {ledger_volume(tmp_path): LEDGER_DIR})
    assert done.returncode == 1
    assert done.stderr.startswith(f"runkeys: Invalid configuration: {name}: is not set")
    assert f"How to fix: set {name}" in done.stderr
    output = done.stdout + done.stderr
    assert WEBHOOK_SECRET not in output
    assert settings["RUNKEYS_PRIVATE_KEY"].splitlines()[1] not in output
    assert list(tmp_path.joinpath("ledger").iterdir()) == []  # refused before the ledger opened


def test_stopping_the_container_stops_the_service_gracefully(
    image: Image, service: Service
) -> None:
    """`docker stop` sends SIGTERM to the entry point's process: gunicorn's master, which lets
    its workers finish what they hold and exits."""
    master = service.master()
    os.kill(master.pid, signal.SIGTERM)
    service.process.wait(30)
    assert service.process.returncode == 0
    assert session_processes(service.process.pid) == []
    assert '"Shutting down: Master"' in service.log.read_text()
    check = image.config["Healthcheck"]["Test"][1:]
    assert image.run(check, {"RUNKEYS_BIND": service.bind}).returncode != 0
