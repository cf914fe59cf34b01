"""The stand-in is a fake independent of the product: it imports nothing from runkeys, handler or
action_src (a wrong rule there must be able to fail a test against it), and carries GitHub's
rules as its own data."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from runkeys_sandbox.server.permissions import Requirement, required

SANDBOX = Path(__file__).resolve().parents[3] / "runkeys_sandbox"
PRODUCT = ("runkeys", "handler", "action_src")
# The demo and the commands drive the product on purpose: they are not the stand-in.
NOT_THE_STAND_IN = ("demo", "cli.py", "build")


def product_imports(source: str) -> set[str]:
    """The modules of the product that `source` imports, anywhere in it (functions and
    `if TYPE_CHECKING:` blocks too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in PRODUCT)
    return found


def test_the_stand_in_imports_nothing_of_the_product() -> None:
    files = [
        path
        for path in SANDBOX.rglob("*.py")
        if path.relative_to(SANDBOX).parts[0] not in NOT_THE_STAND_IN
    ]
    assert {"server/app.py", "server/auth.py", "routes/secrets.py"} <= {
        str(path.relative_to(SANDBOX)) for path in files
    }
    found = {
        f"{path.relative_to(SANDBOX)}: {name}"
        for path in files
        for name in product_imports(path.read_text(encoding="utf-8"))
    }
    assert found == set()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from runkeys.names import SECRET_NAME\n", {"runkeys.names"}),
        ("import handler.app\n", {"handler.app"}),
        ("def f():\n    from action_src import main\n", {"action_src"}),
        ("if TYPE_CHECKING:\n    from runkeys.errors import ConfigError\n", {"runkeys.errors"}),
        ("from runkeys_sandbox.server import state\n", set()),
        ("import runkeys_extra\nfrom . import runkeys\n", set()),
    ],
)
def test_the_import_check(source: str, expected: set[str]) -> None:
    assert product_imports(source) == expected


@pytest.mark.parametrize(
    ("method", "path", "needs"),
    [
        # https://docs.github.com/en/rest/deployments/environments#create-or-update-an-environment
        ("PUT", "/repos/o/r/environments/ci", {("administration", "write")}),
        # https://docs.github.com/en/rest/deploy-keys/deploy-keys#create-a-deploy-key
        ("POST", "/repos/o/r/keys", {("administration", "write")}),
        ("DELETE", "/repos/o/r/keys/7", {("administration", "write")}),
        # https://docs.github.com/en/rest/actions/workflow-runs#get-a-workflow-run
        ("get", "/repos/o/r/actions/runs/5?exclude_pull_requests=true", {("actions", "read")}),
        # https://docs.github.com/en/rest/actions/secrets#get-a-repository-public-key
        ("GET", "/repos/o/r/actions/secrets/public-key", {("secrets", "read")}),
        ("PUT", "/repos/o/r/actions/secrets/S", {("secrets", "write")}),
        # Not endpoints: an empty segment, one too many, a verb the path does not have.
        ("PUT", "/repos/o/r/environments/", set()),
        ("GET", "/repos/o/r/actions/runs/5/nothing", set()),
        ("PATCH", "/repos/o/r/keys/7", set()),
    ],
)
def test_the_stand_ins_permission_table(
    method: str, path: str, needs: set[tuple[str, str]]
) -> None:
    found = required(method, path)
    assert {(n.permission, n.access) for n in found} == needs
    assert all(isinstance(n, Requirement) for n in found)
