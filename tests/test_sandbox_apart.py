"""The stand-in and the demo are not the product: `runkeys sandbox` and `runkeys demo` say how to
install them where they are missing, and the image tests' file check knows them wherever they
might land."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.images import not_the_product

# Runs the real command with runkeys_sandbox not found, as in an image or a bare install (where
# the image tests run the same commands): the first finder answers for it as a missing one would.
WITHOUT_SANDBOX = """
import sys
class Missing:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "runkeys_sandbox":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing)
from runkeys.cli import main
sys.exit(main(sys.argv[1:]))
"""


def runkeys_without_sandbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_SANDBOX, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "args", [["sandbox"], ["demo"], ["sandbox", "--port", "0", "--keys", "-"], ["demo", "--help"]]
)
def test_a_missing_sandbox_is_named_with_how_to_install_it(args: list[str]) -> None:
    done = runkeys_without_sandbox(*args)
    assert done.returncode == 2, done.stderr
    assert f"runkeys {args[0]}: " in done.stderr
    assert "pip install 'runkeys[sandbox]'" in done.stderr
    assert done.stdout == ""


def test_the_other_commands_work_without_the_sandbox() -> None:
    done = runkeys_without_sandbox("--help")
    assert done.returncode == 0, done.stderr
    assert "serve" in done.stdout
    assert "sandbox" in done.stdout  # listed, with how to install it
    assert "runkeys[sandbox]" in done.stdout


def test_with_the_sandbox_its_commands_are_its_own() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runkeys.cli", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--postgres" in done.stdout


SITE = "/opt/runkeys/lib/python3.12/site-packages"


@pytest.mark.parametrize(
    ("name", "stand_in"),
    [
        (f"{SITE}/runkeys_sandbox/server/app.py", True),
        (f"{SITE}/runkeys_sandbox/__init__.py", True),
        (f"{SITE}/runkeys_sandbox-0.1.0.dist-info/RECORD", True),
        (f"{SITE}/runkeys/sandbox/state.py", True),
        (f"{SITE}/runkeys/demo_story.py", True),
        (f"{SITE}/runkeys/demo.py", True),
        (f"{SITE}/runkeys/issuance.py", False),
        (f"{SITE}/runkeys/providers/random_value.py", False),
        (f"{SITE}/runkeys-0.1.0.dist-info/RECORD", False),
        (f"{SITE}/handler/cli.py", False),
        (f"{SITE}/werkzeug/sansio/request.py", False),
        (f"{SITE}/paramiko/demo.py", False),  # someone else's demo is not ours
        ("/usr/lib/python3.12/sandbox.py", False),
    ],
)
def test_the_file_check_knows_the_stand_in_and_the_demo(name: str, stand_in: bool) -> None:
    assert not_the_product([name]) == ([name] if stand_in else [])
