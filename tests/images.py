"""Container images built with buildah, as the action's and the service's image tests build them.

No image registry is reachable from the project's machines, so the base image is made locally
(`scripts/base-image.sh`: debootstrap from this machine's apt mirror) and kept in buildah's
storage under a fixed name: the first test run makes it (about 2 minutes), later runs reuse it.
Building needs root, buildah and debootstrap; without them the image tests skip and say why,
or fail under `RUNKEYS_REQUIRE_SERVICES=1` (CI), which must build both images.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from runkeys import __version__
from tests.locks import Locked
from tests.services import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = "localhost/runkeys-base:{codename}"


def missing() -> str | None:
    """Why images cannot be built here, or None."""
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install buildah debootstrap)"
    if os.geteuid() != 0:
        return "building the base image with debootstrap needs root"
    return None


def codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    skip_or_fail("no VERSION_CODENAME in /etc/os-release: not a Debian-like machine")
    raise AssertionError  # unreachable: skip_or_fail raises


def buildah(*args: str, timeout: float = 900) -> str:
    """`buildah ARGS`' output; a failure fails the test with buildah's own words."""
    done = subprocess.run(
        ["buildah", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"buildah {args[0]} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )
    return done.stdout.strip()


def base_image() -> str:
    """The local base image's name, made first if this machine has none yet."""
    name = BASE_IMAGE.format(codename=codename())
    done = subprocess.run(
        [str(ROOT / "scripts" / "base-image.sh"), name],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return name


@contextmanager
def built(dockerfile: str, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The image `dockerfile` (relative to the repository) makes on the local base, tagged
    `localhost/NAME:test-…`, and its configuration; removed afterwards. Skips where images
    cannot be built (fails instead under `RUNKEYS_REQUIRE_SERVICES=1`).

    Docker's image format, as `docker build` makes: buildah's default (OCI) has no place for
    HEALTHCHECK and drops it."""
    if reason := missing():
        skip_or_fail(reason)
    base = base_image()
    tag = f"localhost/{name}:test-{uuid.uuid4().hex[:8]}"
    buildah(
        "bud", "--isolation", "chroot", "--quiet", "--format", "docker",
        "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"VERSION={__version__}",
        "-f", str(ROOT / dockerfile), "-t", tag, str(ROOT),
    )  # fmt: skip
    try:
        config = json.loads(buildah("inspect", "--type", "image", tag))["Docker"]["config"]
        yield tag, config
    finally:
        subprocess.run(["buildah", "rmi", tag], capture_output=True, check=False)


@contextmanager
def working_container(tag: str) -> Iterator[str]:
    """A working container of `tag` (`buildah from`), for `buildah run`; removed afterwards."""
    working = buildah("from", tag)
    try:
        yield working
    finally:
        subprocess.run(["buildah", "rm", working], capture_output=True, check=False)


def run_argv(
    working: str,
    argv: list[str],
    env: dict[str, str] | None = None,
    volumes: dict[Path, str] | None = None,
) -> list[str]:
    """The `buildah run` command line that runs `argv` in `working` as the image says (its user,
    working directory and environment, plus `env`), with host directories mounted.

    Chroot isolation makes no network namespace: the container shares the host's, as
    `docker run --network host` would, so a server in it binds a host port (`--network host`
    says so explicitly)."""
    return [
        "buildah", "run", "--isolation", "chroot", "--network", "host",
        *(f"--volume={host}:{inside}" for host, inside in (volumes or {}).items()),
        *(f"--env={key}={value}" for key, value in (env or {}).items()),
        working, "--", *argv,
    ]  # fmt: skip


# Run by the image's Python: its distributions with their requirements, and the values markers
# are evaluated against (packaging's names; packaging itself is not in the images).
PROBE = """
import importlib.metadata as m, json, os, platform, sys
v = sys.implementation.version
print(json.dumps({
    "environment": {
        "implementation_name": sys.implementation.name,
        "implementation_version": f"{v.major}.{v.minor}.{v.micro}",
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_python_implementation": platform.python_implementation(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    },
    "distributions": {d.metadata["Name"]: [d.version, d.requires or []] for d in m.distributions()},
}))
"""


@dataclass(frozen=True)
class Installed:
    """What the venv at /opt/runkeys of a working container holds."""

    environment: dict[str, str]
    versions: dict[str, str]
    requires: dict[str, list[Requirement]]

    def needed(self, name: str, extras: tuple[str, ...] = ()) -> set[str]:
        """`name` and every distribution its requirements pull in, by their own metadata."""
        found: set[tuple[str, str]] = set()
        todo = [(canonicalize_name(name), extra) for extra in ("", *extras)]
        while todo:
            here, extra = todo.pop()
            if (here, extra) in found:
                continue
            found.add((here, extra))
            for requirement in self.requires.get(here, []):
                if requirement.marker is None or requirement.marker.evaluate(
                    {**self.environment, "extra": extra}
                ):
                    wanted = canonicalize_name(requirement.name)
                    todo.extend((wanted, e) for e in ("", *requirement.extras))
        return {here for here, _ in found}

    def lock_problems(
        self, lock: dict[str, Locked], project: str, extras: tuple[str, ...] = ()
    ) -> list[str]:
        """How the venv differs from `lock` (its entries whose markers hold here) plus `project`,
        and what in it nothing needs or is needed and missing."""
        expected = {
            name: entry.version
            for name, entry in lock.items()
            if entry.marker is None or entry.marker.evaluate(self.environment)
        }
        others = {name: v for name, v in self.versions.items() if name != project}
        found = [
            f"{name}: {others.get(name, 'not installed')}, the lock says {expected.get(name)}"
            for name in sorted(set(expected) | set(others))
            if others.get(name) != expected.get(name)
        ]
        needed = self.needed(project, extras)
        found += [f"{name}: needed, not installed" for name in sorted(needed - set(self.versions))]
        found += [f"{name}: installed, not needed" for name in sorted(set(self.versions) - needed)]
        return found


def installed(working: str) -> Installed:
    """The distributions of /opt/runkeys in `working`, read by its own Python."""
    probe = json.loads(
        buildah("run", "--isolation", "chroot", working, "--", "/opt/runkeys/bin/python", "-c",
                PROBE)
    )  # fmt: skip
    distributions = {canonicalize_name(k): v for k, v in probe["distributions"].items()}
    return Installed(
        probe["environment"],
        {name: version for name, (version, _) in distributions.items()},
        {name: [Requirement(r) for r in requires] for name, (_, requires) in distributions.items()},
    )


# Every file on the image's Python path and under /opt, as the image's own Python sees them.
FILES_PROBE = """
import json, os, sys
roots = {p for p in sys.path if os.path.isdir(p)} | {"/opt"}
files = {os.path.join(d, f) for r in roots for d, _, fs in os.walk(r) for f in fs}
print(json.dumps(sorted(files)))
"""
# The stand-in and the demo, wherever they might land: their own package and distribution, or
# the places they had inside the product's (runkeys/sandbox/, runkeys/demo*.py).
NOT_THE_PRODUCT = re.compile(
    r"(^|/)runkeys_sandbox[^/]*(/|$)|(^|/)runkeys/sandbox/|(^|/)runkeys/demo[^/]*\.py$"
)


def installed_files(working: str) -> list[str]:
    """The files of `working`'s Python path and /opt, read by the image's Python."""
    listed: list[str] = json.loads(
        buildah("run", "--isolation", "chroot", working, "--", "/opt/runkeys/bin/python", "-c",
                FILES_PROBE)
    )  # fmt: skip
    return listed


def not_the_product(files: list[str]) -> list[str]:
    """Those of `files` that belong to the stand-in or the demo."""
    return [name for name in files if NOT_THE_PRODUCT.search(name)]
