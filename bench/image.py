"""The action's image: what runkeys adds to its base, compressed, and the container's own start
to 10 job-only keys delivered — the image built from the Dockerfile and the lock file with
buildah on the local base (scripts/base-image.sh), as the image tests build it.

    .venv/bin/python -m bench.image [--quick] [--repeat N] [--base IMAGE]

Needs root, buildah and debootstrap (the base is made on first use, about 2 minutes).

Size: the image is pushed to an OCI layout with gzip-compressed layers (`buildah push
--compression-format gzip oci:…`), as a registry would store it; the layers after the base's
(matched by their uncompressed digests) are what runkeys adds, counted as their compressed blob
sizes. Start: a wrapper run by the image's own Python inside the container takes a monotonic
time, spawns the entry point with the runner's environment (`INPUT_KEYS` of 10 `random` keys,
`lifetime: job`: no App, no service, no network) and takes it again when the process has exited
with the keys in `GITHUB_ENV`: interpreter start, imports, minting, masking and the file
commands, and not `buildah run`'s own setup, which is measured apart (the same run, timed from
the host)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import parser, run_benchmark
from bench.report import Result, Spread, Summary, Target

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
TARGET_ADDED_MIB = 30.0  # issue 17: so that on python:3.x-slim (~45 MB) the image stays < 80 MiB
TARGET_START_S = 1.5
KEYS = 10
ENTRYPOINT = "/opt/runkeys/bin/runkeys-action"


def buildah(*args: str, timeout: float = 900) -> str:
    done = subprocess.run(
        ["buildah", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"buildah {args[0]} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout.strip()


def diff_ids(image: str) -> list[str]:
    """The image's layers by their uncompressed digests, base first."""
    data = json.loads(buildah("inspect", "--type", "image", image))
    found: list[str] = data["OCIv1"]["rootfs"]["diff_ids"]
    return found


@dataclass(frozen=True)
class Layer:
    compressed: int  # the gzip blob, as a registry stores and a runner pulls it
    uncompressed: int


@dataclass(frozen=True)
class Sizes:
    base: list[Layer]
    added: list[Layer]

    @property
    def added_compressed(self) -> int:
        return sum(layer.compressed for layer in self.added)

    @property
    def added_uncompressed(self) -> int:
        return sum(layer.uncompressed for layer in self.added)

    @property
    def base_compressed(self) -> int:
        return sum(layer.compressed for layer in self.base)

    @property
    def total_compressed(self) -> int:
        return self.base_compressed + self.added_compressed


def _gunzipped_size(path: Path) -> int:
    size = 0
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            size += len(chunk)
    return size


def layer_sizes(image: str, base: str, scratch: Path) -> Sizes:
    """`image`'s layers, compressed as pushed and uncompressed, split into `base`'s and the
    ones added on top. Fails if `image` does not start with `base`'s layers."""
    ours, theirs = diff_ids(image), diff_ids(base)
    if ours[: len(theirs)] != theirs:
        raise RuntimeError(f"{image} is not built on {base}: its first layers differ")
    layout = scratch / f"oci-{uuid.uuid4().hex[:8]}"
    buildah(
        "push", "--quiet", "--format", "oci", "--compression-format", "gzip",
        image, f"oci:{layout}",
    )  # fmt: skip
    try:
        [entry] = json.loads((layout / "index.json").read_text())["manifests"]
        blobs = layout / "blobs" / "sha256"
        manifest = json.loads((blobs / entry["digest"].split(":", 1)[1]).read_text())
        layers = []
        for described in manifest["layers"]:
            if not described["mediaType"].endswith("tar+gzip"):
                raise RuntimeError(f"a layer was pushed as {described['mediaType']}, not gzip")
            blob = blobs / described["digest"].split(":", 1)[1]
            layers.append(Layer(described["size"], _gunzipped_size(blob)))
    finally:
        shutil.rmtree(layout, ignore_errors=True)
    if len(layers) != len(ours):
        raise RuntimeError(f"{len(layers)} layers pushed, {len(ours)} in the image")
    return Sizes(layers[: len(theirs)], layers[len(theirs) :])


# Run by the image's Python inside the container: argv = entry point, keys, repetitions.
WRAPPER = r"""
import json, os, resource, subprocess, sys, tempfile, time
entry, count, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
keys = "\n".join(f"BENCH_KEY_{i}: {{provider: random, lifetime: job}}" for i in range(count))

def entries(text):
    found, lines = {}, iter(text.splitlines())
    for line in lines:
        if "<<" in line:
            name, delimiter = line.split("<<", 1)
            value = []
            for more in lines:
                if more == delimiter:
                    break
                value.append(more)
            found[name] = "\n".join(value)
        elif "=" in line:
            name, value = line.split("=", 1)
            found[name] = value
    return found

runs = []
for _ in range(repeat):
    step = tempfile.mkdtemp()
    # The image's own environment (PYTHONDONTWRITEBYTECODE, …) as `docker run` gives it, and
    # the runner's variables on top.
    env = {
        **os.environ, "GITHUB_ACTIONS": "true", "CI": "true",
        "GITHUB_REPOSITORY": "octo/app", "GITHUB_REPOSITORY_ID": "1296269",
        "GITHUB_RUN_ID": "4242", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_RUN_NUMBER": "7",
        "GITHUB_EVENT_NAME": "push", "GITHUB_API_URL": "http://127.0.0.1:9",
        "INPUT_KEYS": keys,
    }
    for name in ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY"):
        env[name] = os.path.join(step, name.lower())
        open(env[name], "w").close()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([entry], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(env["GITHUB_ENV"]) as f:
        delivered = {k: v for k, v in entries(f.read()).items() if k.startswith("BENCH_KEY_")}
    from runkeys.providers.random_value import verify_token
    runs.append({
        "seconds": seconds,
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "returncode": done.returncode,
        "delivered": sorted(delivered),
        "valid": sum(1 for v in delivered.values() if verify_token(v)),
        "stderr": done.stderr.decode(errors="replace")[-2000:] if done.returncode else "",
    })
print(json.dumps(runs))
"""


@dataclass(frozen=True)
class Start:
    seconds: float  # inside the container: spawn of the entry point → its exit, keys written
    cpu: float  # the entry point's user + system CPU time
    outer: float  # from the host: the whole `buildah run` (its setup, the wrapper's Python)
    returncode: int
    delivered: list[str]  # the key names found in GITHUB_ENV
    valid: int  # of them, values that are well-formed `random` tokens
    stderr: str


def start_times(working: str, repeat: int, keys: int = KEYS) -> list[Start]:
    """`repeat` runs of the entry point in the working container `working`, each in a
    `buildah run` of its own (chroot isolation, as the image tests run it)."""
    found = []
    for _ in range(repeat):
        started = time.monotonic()
        out = buildah(
            "run", "--isolation", "chroot", "--network", "host", working, "--",
            "/opt/runkeys/bin/python", "-c", WRAPPER, ENTRYPOINT, str(keys), "1",
        )  # fmt: skip
        outer = time.monotonic() - started
        [run] = json.loads(out)
        found.append(Start(outer=outer, **run))
    return found


# The venv's files by top-level entry of site-packages, and how much of it is bytecode.
CONTENTS = r"""
import json, os, sysconfig
site = sysconfig.get_paths()["purelib"]
sizes, pyc = {}, 0
for d, _, files in os.walk("/opt/runkeys"):
    for f in files:
        p = os.path.join(d, f)
        if os.path.islink(p):
            continue
        n = os.path.getsize(p)
        rel = os.path.relpath(p, site)
        top = rel.split(os.sep)[0] if not rel.startswith("..") else "(venv outside site-packages)"
        sizes[top] = sizes.get(top, 0) + n
        if f.endswith(".pyc"):
            pyc += n
print(json.dumps({"by_top": sizes, "pyc": pyc}))
"""


def contents(working: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        buildah("run", "--isolation", "chroot", working, "--", "/opt/runkeys/bin/python", "-c",
                CONTENTS)
    )  # fmt: skip
    return data


@dataclass(frozen=True)
class Settings:
    repeat: int = 7
    base: str | None = None


def base_image() -> str:
    codename = ""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            codename = line.split("=", 1)[1].strip('"')
    name = f"localhost/runkeys-base:{codename}"
    subprocess.run([str(ROOT / "scripts" / "base-image.sh"), name], check=True, timeout=900)
    return name


def measure(tag: str, base: str, scratch: Path, repeat: int) -> tuple[Sizes, list[Start], Any]:
    sizes = layer_sizes(tag, base, scratch)
    working = buildah("from", tag)
    try:
        starts = start_times(working, repeat)
        inside = contents(working)
    finally:
        subprocess.run(["buildah", "rm", working], capture_output=True, check=False)
    return sizes, starts, inside


def mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"


def result(sizes: Sizes, starts: list[Start], inside: dict[str, Any], base: str) -> Result:
    seconds = Spread.of([s.seconds for s in starts])
    cpu = Spread.of([s.cpu for s in starts])
    outer = Spread.of([s.outer for s in starts])
    delivered = all(
        s.returncode == 0 and len(s.delivered) == KEYS and s.valid == KEYS for s in starts
    )
    added_ok = sizes.added_compressed <= TARGET_ADDED_MIB * MIB
    start_ok = delivered and seconds.median <= TARGET_START_S
    biggest = sorted(inside["by_top"].items(), key=lambda item: -item[1])[:8]
    return Result(
        name="image",
        title="The action's image: size added to the base, and start → 10 keys delivered",
        method=(
            "Built from the Dockerfile and requirements/action.txt with buildah on the local "
            f"Debian base ({base}); layers pushed gzip-compressed to an OCI layout. Start: "
            f"{len(starts)} runs, each a `buildah run` of its own, timed inside the container "
            "from spawning the entry point to its exit with 10 `random` job-only keys in "
            "GITHUB_ENV; median (min-max)."
        ),
        columns=[("what", "what"), ("value", "measured")],
        rows=[
            {"what": "layers runkeys adds, compressed", "value": mib(sizes.added_compressed)},
            {"what": "layers runkeys adds, uncompressed", "value": mib(sizes.added_uncompressed)},
            {"what": "base layers, compressed", "value": mib(sizes.base_compressed)},
            {"what": "whole image, compressed", "value": mib(sizes.total_compressed)},
            {"what": "of the venv: bytecode (.pyc)", "value": mib(inside["pyc"])},
            {"what": "start → 10 keys delivered, inside", "value": seconds.show(2, " s")},
            {"what": "the same, the first run (cold files)", "value": f"{starts[0].seconds:.2f} s"},
            {"what": "its CPU time (user + system)", "value": cpu.show(2, " s")},
            {"what": "the whole `buildah run`, from the host", "value": outer.show(2, " s")},
        ],
        targets=[
            Target(
                "layers added, compressed",
                f"<= {TARGET_ADDED_MIB:g} MiB",
                mib(sizes.added_compressed),
                added_ok,
            ),
            Target(
                "start → 10 keys delivered (median)",
                f"<= {TARGET_START_S:g} s",
                f"{seconds.median:.2f} s",
                start_ok,
            ),
        ],
        settings={"repeat": len(starts), "base": base, "keys": KEYS},
        notes=[
            "Largest parts of the venv (uncompressed): "
            + ", ".join(f"{name} {mib(size)}" for name, size in biggest),
            "The time inside excludes `buildah run`'s own setup and the wrapper's interpreter "
            "start; the host-side figure includes both (a runner's `docker run` has its own).",
            "Wall times on a shared machine follow its load (in the machine line); the CPU "
            "time is what the step itself costs.",
        ],
        summary=[
            Summary(
                "Action image, layers runkeys adds (gzip)",
                f"{mib(sizes.added_compressed)} (image {mib(sizes.total_compressed)})",
                f"Debian base: {mib(sizes.base_compressed)}",
                f"{sizes.added_compressed / sizes.base_compressed:.2f} (added / base)",
                f"<= {TARGET_ADDED_MIB:g} MiB added",
                added_ok,
            ),
            Summary(
                "Action image, container start → 10 job-only keys delivered",
                f"{seconds.median:.2f} s (first run {starts[0].seconds:.2f} s; "
                f"CPU {cpu.median:.2f} s)",
                f"the whole `buildah run`: {outer.median:.2f} s",
                "-",
                f"<= {TARGET_START_S:g} s, import time included",
                start_ok,
            ),
        ],
        raw={
            "sizes": {
                "base": [asdict(x) for x in sizes.base],
                "added": [asdict(x) for x in sizes.added],
            },
            "starts": [asdict(s) for s in starts],
            "venv": inside,
        },
    )


def run(s: Settings, tmp: Path) -> Result:
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (apt-get install buildah debootstrap)")
    if os.geteuid() != 0:
        raise RuntimeError("building the images with buildah here needs root")
    base = s.base or base_image()
    tag = f"localhost/runkeys-action:bench-{uuid.uuid4().hex[:8]}"
    buildah(
        "bud", "--isolation", "chroot", "--quiet", "--format", "docker",
        "--build-arg", f"BASE_IMAGE={base}", "-f", str(ROOT / "Dockerfile"), "-t", tag, str(ROOT),
    )  # fmt: skip
    try:
        sizes, starts, inside = measure(tag, base, tmp, s.repeat)
    finally:
        subprocess.run(["buildah", "rmi", tag], capture_output=True, check=False)
    return result(sizes, starts, inside, base)


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("image", __doc__ or "")
    p.add_argument("--base", help="the base image (default: scripts/base-image.sh's)")
    args = p.parse_args(argv)
    s = Settings(repeat=2 if args.quick else 7, base=args.base)
    if args.repeat:
        s = Settings(args.repeat, s.base)
    return run_benchmark("image", run, s, args.out)


if __name__ == "__main__":
    sys.exit(main())
