"""A clone of the repository runs its suite on its own: no file names a folder outside it, and the
tests that read GitHub's data pass from a copy of the repository's files with everything beside
the repository hidden (the data lives in `tests/github/`, read through `tests/github_data.py`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.services import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
# Spelled in pieces so that this file does not match itself.
OUTSIDE = [b"/work/" + b"shared", b"../" + b"shared", b"FACTS" + " §".encode(), b"FACTS" + b".md"]
# The tests that read the vendored data (the ledger on SQLite only, to stay fast).
SUBSET = [
    "tests/openapi/test_validator.py",
    "tests/unit/service/test_webhook_sansio.py",
    "tests/service/test_webhook_view.py",
    "tests/sandbox/test_webhooks.py",
    "tests/action/test_metadata.py::test_action_yml_is_valid_against_the_official_schema",
    "tests/action/test_metadata.py::test_a_broken_action_yml_is_caught_by_the_schema",
]
# Mounts an empty folder over each argument, checks each is empty, checks the copy's modules are
# the ones imported, then runs the subset.
SCRIPT = """set -e
for d; do mount -t tmpfs none "$d" || [ ! -e "$d" ]; done
for d; do [ -z "$(ls -A "$d" 2>/dev/null)" ]; done
"$PY" -c 'import sys, tests.github_data as g; assert str(g.ROOT).startswith(sys.argv[1])' "$PWD"
exec "$PY" -m pytest -p no:cacheprovider -q -x -k "not postgres" $SUBSET
"""


def files() -> list[str]:
    """The files a clone has, and those about to be committed."""
    if shutil.which("git") is None:
        skip_or_fail("git is not installed")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    return [name for name in listed.stdout.decode().split("\0") if (ROOT / name).is_file()]


def test_no_file_names_a_folder_outside_the_repository() -> None:
    found = [
        f"{name}: {needle.decode()}"
        for name in files()
        for needle in OUTSIDE
        if needle in (ROOT / name).read_bytes()
    ]
    assert found == []


def beside(repo: Path, keep: list[Path]) -> list[Path]:
    """Every folder next to the repository and next to each folder holding it, below the
    filesystem's top level, except those holding something in `keep`."""
    hidden = []
    for inner in [repo, *repo.parents]:
        if inner.parent.parent == inner.parent:  # `inner` is at the top level, or is the root
            break
        for other in sorted(inner.parent.iterdir()):
            held = any(other == k or other in k.parents for k in keep)
            if other != inner and other.is_dir() and not other.is_symlink() and not held:
                hidden.append(other)
    return hidden


def can_hide() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False)
    return probe.returncode == 0


def test_the_github_data_is_read_from_a_clone_alone(tmp_path: Path) -> None:
    """The subset runs from a copy of the repository's files; where a mount namespace can be
    made (root, or unprivileged user namespaces), everything beside the repository is hidden."""
    copy = tmp_path / "clone"
    for name in files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    python = Path(sys.executable)
    keep = [ROOT, copy, python, Path(sys.prefix), Path(sys.base_prefix)]
    keep.append(Path(tempfile.gettempdir()))
    hidden = beside(ROOT, [k.resolve() for k in keep]) if can_hide() else []
    run = ["sh", "-c", SCRIPT, "sh", *map(str, hidden)]
    result = subprocess.run(
        ["unshare", "-rm", *run] if hidden else run,
        cwd=copy,
        env={**os.environ, "PY": str(python), "SUBSET": " ".join(SUBSET)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary, summary
    assert "skipped" not in summary, summary
