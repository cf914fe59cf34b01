""".github/dependabot.yml proposes bumps of the base images, the locks and the workflows' actions:
valid by the schema check-jsonschema ships (SchemaStore's), and pointed at files Dependabot can
read as it reads them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.locks import LOCKS, ROOT
from tests.unit.test_base_images import DOCKERFILES, EXACT, base_image

CONFIG = ROOT / ".github" / "dependabot.yml"
# How Dependabot finds and updates a base image: files whose name matches /dockerfile/i, FROM
# lines naming the image itself (it reads no ARG defaults); dependabot-core's docker updater.
DEPENDABOT_FILES = re.compile(r"dockerfile", re.I)
DEPENDABOT_FROM = re.compile(
    r"^FROM(?:\s+--platform=\S+)?\s+(?:docker\.io/)?(\S+:\S+)(?=\s|$)", re.M
)


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.dependabot",
         str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_configuration_is_valid() -> None:
    done = check(CONFIG)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("valid", "almost"),
    [
        ("interval: weekly", "interval: fortnightly"),
        ("package-ecosystem: docker\n", "package-ecosystem: dockerfile\n"),
        ("increase-if-necessary", "increase-if-needed"),
        ("version-update:semver-minor]", "version-update:semver-minr]"),
    ],
)
def test_an_almost_valid_configuration_is_refused(valid: str, almost: str, tmp_path: Path) -> None:
    text = CONFIG.read_text()
    assert valid in text
    (tmp_path / "dependabot.yml").write_text(text.replace(valid, almost, 1))
    done = check(tmp_path / "dependabot.yml")
    assert done.returncode == 1
    assert almost.rsplit(":", maxsplit=1)[-1].strip(" \n]") in done.stdout


def test_it_watches_the_base_images_the_locks_and_the_actions() -> None:
    updates = yaml.safe_load(CONFIG.read_text())["updates"]
    assert sorted((u["package-ecosystem"], u["directory"]) for u in updates) == [
        ("docker", "/"),
        ("github-actions", "/"),
        ("pip", "/"),
    ]
    docker = next(u for u in updates if u["package-ecosystem"] == "docker")
    assert docker["ignore"] == [
        {
            "dependency-name": "python",
            "update-types": ["version-update:semver-major", "version-update:semver-minor"],
        }
    ]


def test_dependabot_finds_each_images_base_in_the_directory_it_watches() -> None:
    found = sorted(
        p.name for p in ROOT.iterdir() if p.is_file() and DEPENDABOT_FILES.search(p.name)
    )
    assert found == sorted(DOCKERFILES)
    for name in found:
        text = (ROOT / name).read_text()
        assert DEPENDABOT_FROM.findall(text) == [base_image(name).reference]
        assert EXACT.fullmatch(base_image(name).reference)


def test_the_locks_are_where_the_pip_updater_reads_requirement_files() -> None:
    """Requirement files (.txt) in the watched directory or a directory right under it."""
    for lock in LOCKS:
        path = Path(lock.path)
        assert path.suffix == ".txt"
        assert len(path.parts) <= 2
