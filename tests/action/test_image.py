"""The action's image, built from the Dockerfile with buildah and run as the runner runs it:
the entry point with `INPUT_*` and the file-command files mounted in.

The image is built on a locally made base (tests/images.py). Slow: the first run on a machine
debootstraps the base (about 2 minutes), every run builds (about 20 s).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.image import (
    KEYS,
    MIB,
    TARGET_ADDED_MIB,
    layer_sizes,
    start_times,
)
from runkeys import __version__
from runkeys.providers.random_value import verify_token
from runkeys_sandbox.server.sandbox import Sandbox
from tests.action.harness import Step
from tests.images import (
    base_image,
    buildah,
    built,
    installed,
    installed_files,
    not_the_product,
    run_argv,
    working_container,
)
from tests.locks import ACTION, parse

ROOT = Path(__file__).resolve().parents[2]
CHECK_ACTION = ROOT / "check" / "action.yml"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def image() -> Iterator[tuple[str, dict[str, Any]]]:
    """A freshly built action image: (tag, configuration)."""
    with built("Dockerfile", "runkeys-action") as made:
        yield made


@pytest.fixture(scope="module")
def container(
    image: tuple[str, dict[str, Any]],
) -> Iterator[tuple[str, list[str], list[str]]]:
    """A working container of the action image: (id, entrypoint, post-entrypoint)."""
    tag, config = image
    assert "User" not in config or config["User"] in ("", "root", "0")
    post = ["/opt/runkeys/bin/runkeys-action-post"]  # action.yml's post-entrypoint
    with working_container(tag) as working:
        yield working, config["Entrypoint"], post


def in_container(working: str, argv: list[str], tmp: Path):  # type: ignore[no-untyped-def]
    """Run `argv` in the container with the step's environment and its files mounted at the
    same paths, as the runner mounts /github/file_commands."""

    def wrap(_local: list[str], env: dict[str, str]) -> list[str]:
        variables = {k: v for k, v in env.items() if k != "PATH"}
        return run_argv(working, argv, variables, {tmp: str(tmp)})

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
        buildah(
            "run", "--isolation", "chroot", working, "--", "/opt/runkeys/bin/python", "-c", probe
        )
    )
    assert found == {
        "runkeys": True, "action_src": True, "nacl": True, "github": True, "psycopg": True,
        "pymysql": True, "redis": True,
        "flask": False, "gunicorn": False, "sqlalchemy": False, "prometheus_client": False,
    }  # fmt: skip


def test_the_image_holds_its_lock_and_runkeys_and_nothing_else(
    container: tuple[str, list[str], list[str]],
) -> None:
    """By hash from requirements/action.txt; every distribution needed by runkeys' own metadata
    (no pip, no build tools), none missing."""
    working, _, _ = container
    found = installed(working)
    assert found.versions["runkeys"] == __version__
    assert {"pip", "setuptools", "wheel"}.isdisjoint(found.versions)
    assert found.lock_problems(parse(ACTION.text()), "runkeys") == []


def test_the_image_holds_neither_the_stand_in_nor_the_demo(
    container: tuple[str, list[str], list[str]],
) -> None:
    working, _, _ = container
    files = installed_files(working)
    assert any(name.endswith("/runkeys/issuance.py") for name in files)  # the listing is real
    assert not_the_product(files) == []
    done = subprocess.run(
        run_argv(working, ["/opt/runkeys/bin/runkeys", "demo"]),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "pip install 'runkeys[sandbox]'" in done.stderr


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


def test_the_image_runs_the_check_sub_actions_entry_point(
    container: tuple[str, list[str], list[str]], tmp_path: Path
) -> None:
    """check/action.yml's entrypoint exists in the image and reads its inputs: a named key
    missing from the step's env is named before anything is asked."""
    working, _, _ = container
    entrypoint = [yaml.safe_load(CHECK_ACTION.read_text())["runs"]["entrypoint"]]
    step = Step(tmp_path)
    run = step.run(
        {"keys": "API_TOKEN", "service-url": "https://runkeys.example"},
        wrap=in_container(working, entrypoint, tmp_path),
    )
    assert run.returncode == 1, [*run.lines, run.stderr]
    ((title, message),) = run.annotations("error")
    assert title == "runkeys: Invalid configuration"
    assert message.startswith("key API_TOKEN: is not set (or empty) in this step's environment")


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


def test_the_image_scans_with_the_scan_sub_actions_entry_point(
    container: tuple[str, list[str], list[str]], tmp_path: Path
) -> None:
    """scan/action.yml's entrypoint, in the image: after the main step in the same job it
    finds the key in a file and names file and line, not the value."""
    working, entrypoint, _ = container
    scan = [yaml.safe_load((ROOT / "scan" / "action.yml").read_text())["runs"]["entrypoint"]]
    step = Step(tmp_path)
    run = step.run(
        {"keys": "API_TOKEN: {provider: random, lifetime: job}"},
        wrap=in_container(working, entrypoint, tmp_path),
    )
    assert run.returncode == 0, [*run.lines, run.stderr]
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "out.log").write_text(f"ok\ntoken={run.env['API_TOKEN']}\n")
    found = step.run(
        {"path": str(reports)}, extra_env=run.job_env(), wrap=in_container(working, scan, tmp_path)
    )
    assert found.returncode == 1, [*found.lines, found.stderr]
    (error,) = found.annotations("error")
    assert error[1] == f"{reports}/out.log, line 2: the value of API_TOKEN (raw)"
    found.assert_nowhere([run.env["API_TOKEN"]])


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


# --- the targets of issue 17: size and start (bench/image.py measures them for the README) ---


def test_the_layers_runkeys_adds_are_at_most_30_mib_compressed(
    image: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Pushed gzip-compressed to an OCI layout, as a registry stores it: the layers after the
    base's. The split is checked, not assumed: the base's layers come first and are the
    base's own, and runkeys' venv is in what is counted."""
    tag, _ = image
    sizes = layer_sizes(tag, base_image(), tmp_path)
    assert sizes.base
    assert sizes.added
    # The venv (PyGithub, psycopg's libpq, …) is several MiB even compressed: a split that put
    # it in the base, or a count of empty layers, would come out far below.
    assert sizes.added_compressed > 5 * MIB
    assert sizes.added_compressed < sizes.added_uncompressed  # really compressed
    assert sizes.added_compressed <= TARGET_ADDED_MIB * MIB, (
        f"{sizes.added_compressed / MIB:.1f} MiB added"
    )


def test_the_start_bench_image_py_times_delivers_10_job_only_keys(
    container: tuple[str, list[str], list[str]],
) -> None:
    """What bench/image.py times inside the container (spawn of the entry point to its exit
    with the 10 keys in GITHUB_ENV) really delivers the keys. The time itself is the
    benchmark's to report, not a test's to assert: a busy shared machine is not a bug."""
    working, entrypoint, _ = container
    assert entrypoint == ["/opt/runkeys/bin/runkeys-action"]  # what the wrapper spawns
    starts = start_times(working, repeat=2)
    for start in starts:
        assert start.returncode == 0, start.stderr
        assert start.delivered == sorted(f"BENCH_KEY_{i}" for i in range(KEYS))
        assert start.valid == KEYS  # real tokens, not empty lines under the right names
        assert start.cpu > 0
        assert 0 < start.seconds < start.outer  # the inside time is part of the outside one


# Every module of the venv: whether its cached bytecode is there and matches the source (its
# hash, or its mtime and size, as the .pyc's header says).
BYTECODE_PROBE = r"""
import importlib.util, json, os, struct, sysconfig
site = sysconfig.get_paths()["purelib"]
stale, fresh = [], 0
for d, _, files in os.walk(site):
    for f in files:
        if not f.endswith(".py"):
            continue
        source = os.path.join(d, f)
        try:
            with open(importlib.util.cache_from_source(source), "rb") as cached:
                header = cached.read(16)
        except OSError:
            stale.append(source)
            continue
        flags, mtime, size = struct.unpack("<III", header[4:16])
        if flags & 1:  # hash-based (PEP 552): the source's hash
            with open(source, "rb") as f:
                valid = header[8:16] == importlib.util.source_hash(f.read())
        else:
            st = os.stat(source)
            valid = (mtime, size) == (int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF)
        if valid:
            fresh += 1
        else:
            stale.append(source)
print(json.dumps({"fresh": fresh, "stale": stale}))
"""


def test_the_image_carries_valid_bytecode_for_every_module(
    container: tuple[str, list[str], list[str]],
) -> None:
    """The image sets PYTHONDONTWRITEBYTECODE, so a module without valid bytecode is compiled
    again at every start (without any, the entry point's CPU time doubled: bench/image.py's
    wrapper, docs/benchmarks.md). COPY --from gave pip's sources new mtimes, which made most
    of its timestamp-checked .pyc files stale; the Dockerfile compiles them hash-based."""
    working, _, _ = container
    found = json.loads(
        buildah(
            "run", "--isolation", "chroot", working, "--", "/opt/runkeys/bin/python", "-c",
            BYTECODE_PROBE,
        )
    )  # fmt: skip
    assert found["fresh"] > 500  # the probe really read the venv's modules
    assert found["stale"] == []
