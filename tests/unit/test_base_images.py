"""Both images build, by default, on one exact release of the official Python image: a patch
release and a Debian suite, not a tag that moves under the same name (`python:3.12-slim`)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

import pytest

from tests.locks import LOCKS, ROOT, header_command

DOCKERFILES = ("Dockerfile", "service.Dockerfile")
# Debian's suites since the official images began naming them; a misspelt suite is no tag.
SUITES = ("bullseye", "bookworm", "trixie", "forky", "duke")
EXACT = re.compile(rf"python:3\.(?P<minor>\d+)\.(?P<patch>\d+)-slim-(?:{'|'.join(SUITES)})")


@dataclass(frozen=True)
class BaseImage:
    reference: str  # the default: what the BASE_IMAGE stage's FROM line names
    froms: list[str]  # every FROM line's image, as written


def base_image(dockerfile: str) -> BaseImage:
    """The default base image of `dockerfile`: `ARG BASE_IMAGE=STAGE` before the first FROM and
    `FROM IMAGE AS STAGE`."""
    text = (ROOT / dockerfile).read_text()
    before_the_first_stage = text.split("\nFROM ", 1)[0]
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", before_the_first_stage, re.M)
    assert default, f"{dockerfile}: no `ARG BASE_IMAGE=…` before its first FROM"
    stages = {stage: image for image, stage in re.findall(r"^FROM (\S+) AS (\S+)$", text, re.M)}
    assert default.group(1) in stages, f"{dockerfile}: no stage {default.group(1)}"
    return BaseImage(stages[default.group(1)], re.findall(r"^FROM (\S+)", text, re.M))


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_the_default_base_image_is_an_exact_release(dockerfile: str) -> None:
    image = base_image(dockerfile)
    assert EXACT.fullmatch(image.reference), image.reference
    # Every other stage builds on BASE_IMAGE: no second base that could float.
    assert sorted(set(image.froms)) == sorted({image.reference, "${BASE_IMAGE}"})


def test_both_images_build_on_the_same_base() -> None:
    assert base_image("Dockerfile").reference == base_image("service.Dockerfile").reference


def test_the_base_images_python_is_one_the_project_and_its_locks_support() -> None:
    match = EXACT.fullmatch(base_image("Dockerfile").reference)
    assert match
    minor = int(match.group("minor"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"Programming Language :: Python :: 3.{minor}" in project["classifiers"]
    for lock in LOCKS:
        command = header_command(lock.text()).split()
        floor = command[command.index("--python-version") + 1]
        assert "--universal" in command  # resolved for every Python from the floor up
        assert (3, minor) >= tuple(int(part) for part in floor.split("."))


@pytest.mark.parametrize(
    ("reference", "exact"),
    [
        ("python:3.12.13-slim-trixie", True),
        ("python:3.13.14-slim-bookworm", True),
        ("python:3.12-slim", False),  # the minor's newest patch, whatever it is that day
        ("python:3.12-slim-trixie", False),
        ("python:3.12.13-slim", False),  # the suite changes under it
        ("python:3.12.13-trixie", False),  # not slim: compilers in the image
        ("python:3.12.13rc1-slim-trixie", False),
        ("python:3.12.13-slim-trixy", False),
        ("python:latest", False),
        ("python:3.12.13-slim-trixie ", False),
    ],
)
def test_the_exact_release_pattern(reference: str, exact: bool) -> None:
    assert bool(EXACT.fullmatch(reference)) is exact
