"""The files a release is made of agree with each other: one version, a changelog in Keep a
Changelog's shape, the license pyproject names."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from runkeys import __version__
from runkeys.versions import series

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_semver_and_the_packages_own() -> None:
    assert series(__version__) is not None, __version__
    assert importlib.metadata.version("runkeys") == __version__
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project  # read from runkeys/__init__.py, written nowhere else
    assert project["dynamic"] == ["version"]


def test_the_license_is_the_one_pyproject_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) ")
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_the_changelog_has_unreleased_first_and_dated_semver_releases() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "[Unreleased]"
    for heading in headings[1:]:
        assert re.fullmatch(r"\[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", heading), heading
    released = [h.split("]")[0][1:] for h in headings[1:]]
    assert all(series(v) is not None for v in released)
    for name in ("[Unreleased]", *(f"[{v}]" for v in released)):
        assert re.search(rf"^{re.escape(name)}: https://", text, re.M), f"no link for {name}"
