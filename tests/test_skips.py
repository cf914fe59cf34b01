"""CI cannot pass by skipping: every skip for a missing tool or service goes through
`tests.services.skip_or_fail`, which fails under `RUNKEYS_REQUIRE_SERVICES=1`."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
# The one place allowed to skip: it fails instead when CI requires the services.
HELPER = TESTS / "services.py"
SKIPPING = {"skip", "skipif", "importorskip", "skipTest", "SkipTest"}
SKIP_MODULES = {"pytest", "_pytest.outcomes", "unittest"}


def skips(source: str) -> list[str]:
    """Each way `source` can skip a test without the helper, as `line: what`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in SKIPPING:
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in SKIP_MODULES:
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name in SKIPPING]
    return found


@pytest.mark.parametrize(
    "source",
    [
        "import pytest\npytest.skip('no buildah')",
        "import pytest\npytestmark = pytest.mark.skipif(True, reason='no ssh')",
        "import pytest\n@pytest.mark.skip\ndef test_x() -> None: ...",
        "import pytest as p\np.importorskip('redis')",
        "from pytest import skip as s\ns('no wrk')",
        "import unittest\nclass T(unittest.TestCase):\n    def test_x(self): self.skipTest('x')",
        "from unittest import SkipTest",
    ],
)
def test_the_scan_sees_each_way_to_skip(source: str) -> None:
    assert skips(source), source


def test_the_scan_leaves_the_helper_and_other_calls_alone() -> None:
    assert skips("from tests.services import skip_or_fail\nskip_or_fail('no buildah')") == []
    assert skips("import pytest\n@pytest.mark.slow\ndef test_x() -> None: pytest.fail('x')") == []
    assert skips("def skipped() -> None: ...\nskipped()") == []


def test_no_test_skips_except_through_the_helper() -> None:
    files = sorted(p for p in TESTS.rglob("*.py") if p != HELPER)
    assert len(files) > 50  # the scan sees the suite, not an empty folder
    found = {
        str(path.relative_to(ROOT)): where
        for path in files
        if (where := skips(path.read_text()))
        and path != Path(__file__).resolve()  # this file names them to find them
    }
    assert found == {}, "skip with tests.services.skip_or_fail, which CI turns into a failure"


def _image_tests(tmp_path: Path, **environ: str) -> ET.Element:
    """The image tests run by pytest in a child, with a PATH holding no buildah: its JUnit
    report's one test suite."""
    path = os.pathsep.join(
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not Path(d, "buildah").exists()
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RUNKEYS_REQUIRE"))}
    report = tmp_path / "report.xml"
    subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
            f"--junitxml={report}", "-o", "junit_family=xunit2",
            "tests/action/test_image.py", "tests/service/test_image.py",
        ],
        cwd=ROOT, env={**env, "PATH": path, **environ}, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    return suite


def test_without_buildah_the_image_tests_fail_when_ci_requires_them(tmp_path: Path) -> None:
    suite = _image_tests(tmp_path, RUNKEYS_REQUIRE_SERVICES="1")
    cases = suite.findall("testcase")
    assert len(cases) >= 10  # both images' tests, collected
    assert suite.get("skipped") == "0"
    for case in cases:
        (problem,) = [c for c in case if c.tag in ("error", "failure")]
        text = (problem.get("message") or "") + (problem.text or "")
        assert "buildah is not installed" in text, text[-2000:]
        assert "RUNKEYS_REQUIRE_SERVICES=1" in text, text[-2000:]


def test_without_buildah_the_image_tests_skip_saying_why_on_a_developers_machine(
    tmp_path: Path,
) -> None:
    suite = _image_tests(tmp_path)
    cases = suite.findall("testcase")
    assert len(cases) >= 10
    for case in cases:
        (skipped,) = [c for c in case if c.tag == "skipped"]
        assert "buildah is not installed" in (skipped.get("message") or ""), case.get("name")
