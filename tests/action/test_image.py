"""The action's image, built from the Dockerfile with buildah and run as the runner runs it:
the entry point with `INPUT_*` and the file-command files mounted in.

No image registry is reachable from the project's machines, so the base image is made locally
(`scripts/base-image.sh`: debootstrap from this machine's apt mirror). Slow: the first run
debootstraps (about 90 s), every run builds (about 40 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runkeys.providers.random_value import verify_token
from runkeys.sandbox import Sandbox
from tests.action.harness import Step

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "localhost/runkeys-base:{codename}"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _missing() -> str | None:
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install buildah debootstrap)"
    if os.geteuid() != 0:
        return "building the base image with debootstrap needs root"
    return None


def _codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    pytest.skip("no VERSION_CODENAME in /etc/os-release: not a Debian-like machine")


def _buildah(*args: str, timeout: float = 900) -> str:
    done = subprocess.run(
        ["buildah", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"buildah {args[0]} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def container() -> Iterator[tuple[str, list[str], list[str]]]:
    """A working container of a freshly built action image: (id, entrypoint, post-entrypoint)."""
    if reason := _missing():
        pytest.skip(reason)
    base = BASE_IMAGE.format(codename=_codename())
    done = subprocess.run(
        [str(ROOT / "scripts" / "base-image.sh"), base],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tag = f"localhost/runkeys-action:test-{uuid.uuid4().hex[:8]}"
    _buildah(
        "bud", "--isolation", "chroot", "--quiet", "--build-arg", f"BASE_IMAGE={base}",
        "-t", tag, str(ROOT),
    )  # fmt: skip
    config = json.loads(_buildah("inspect", "--type", "image", tag))["OCIv1"]["config"]
    assert "User" not in config or config["User"] in ("", "root", "0")
    working = _buildah("from", tag)
    post = ["/opt/runkeys/bin/runkeys-action-post"]  # action.yml's post-entrypoint
    try:
        yield working, config["Entrypoint"], post
    finally:
        subprocess.run(["buildah", "rm", working], capture_output=True, check=False)
        subprocess.run(["buildah", "rmi", tag], capture_output=True, check=False)


def in_container(working: str, argv: list[str], tmp: Path):  # type: ignore[no-untyped-def]
    """Run `argv` in the container with the step's environment and its files mounted at the
    same paths, as the runner mounts /github/file_commands."""

    def wrap(_local: list[str], env: dict[str, str]) -> list[str]:
        variables = [f"--env={k}={v}" for k, v in env.items() if k != "PATH"]
        return [
            "buildah", "run", "--isolation", "chroot", "--network", "host",
            f"--volume={tmp}:{tmp}", *variables, working, "--", *argv,
        ]  # fmt: skip

    return wrap


def test_the_image_has_the_provider_drivers_but_not_the_services_extras(
    container: tuple[str, list[str], list[str]],
) -> None:
    working, _, _ = container
    probe = (
        "import importlib.util as u, json; "
        "print(json.dumps({m: u.find_spec(m) is not None for m in "
        "('runkeys', 'action_src', 'nacl', 'github', 'psycopg', 'pymysql', 'redis', "
        "'flask', 'gunicorn', 'sqlalchemy', 'prometheus_client')}))"
    )
    found = json.loads(
        _buildah(
            "run", "--isolation", "chroot", working, "--", "/opt/runkeys/bin/python", "-c", probe
        )
    )
    assert found == {
        "runkeys": True, "action_src": True, "nacl": True, "github": True, "psycopg": True,
        "pymysql": True, "redis": True,
        "flask": False, "gunicorn": False, "sqlalchemy": False, "prometheus_client": False,
    }  # fmt: skip


def test_the_image_fails_a_bad_spec_with_an_annotation(
    container: tuple[str, list[str], list[str]], tmp_path: Path
) -> None:
    working, entrypoint, _ = container
    step = Step(tmp_path)
    run = step.run(
        {"keys": "A: {provider: random, bytes: 8}"},
        wrap=in_container(working, entrypoint, tmp_path),
    )
    assert run.returncode == 1
    assert run.annotations("error") == [
        (
            "runkeys: Invalid key spec",
            "The `keys` input has 1 problem(s):\n"
            "- keys.A.bytes: must be between 16 and 1024, not 8\n\nNothing was minted.",
        )
    ]


def test_the_image_mints_a_random_key_and_its_post_step_retires_it(
    container: tuple[str, list[str], list[str]], tmp_path: Path
) -> None:
    working, entrypoint, post = container
    step = Step(tmp_path)
    run = step.run(
        {"keys": "API_TOKEN: {provider: random, lifetime: job}"},
        wrap=in_container(working, entrypoint, tmp_path),
    )
    assert run.returncode == 0, [*run.lines, run.stderr]
    value = run.env["API_TOKEN"]
    assert verify_token(value)
    run.assert_masked_first({"API_TOKEN": value})
    run.assert_nowhere([value])
    done = step.run(
        {}, extra_env=step.post_env(run), post=True, wrap=in_container(working, post, tmp_path)
    )
    assert done.returncode == 0
    assert "API_TOKEN: revoked." in done.lines


def test_the_image_writes_environment_secrets_to_github_on_loopback(
    container: tuple[str, list[str], list[str]], tmp_path: Path
) -> None:
    """PyGithub, PyNaCl and the App's JWT as installed in the image, against the sandbox."""
    working, entrypoint, _ = container
    with Sandbox() as sandbox:
        repo = sandbox.add_repository("octo/app")
        app = sandbox.add_app()
        sandbox.install(app, [repo])
        step = Step(tmp_path)
        step.base_env["GITHUB_API_URL"] = sandbox.url
        run = step.run(
            {
                "keys": "API_TOKEN: {provider: random, lifetime: job}",
                "environment": "ci-run-{run_id}",
                "app-id": str(app.id),
                "private-key": app.private_key_pem,
            },
            wrap=in_container(working, entrypoint, tmp_path),
        )
        assert run.returncode == 0, [*run.lines, run.stderr]
        assert sandbox.secret_value(repo, "API_TOKEN", "ci-run-4242") == run.env["API_TOKEN"]
