"""`make mutate` covers the trust-critical modules, and its committed report leaves no surviving
mutant unexplained. Cheap: reads pyproject.toml, the report and scripts/, runs no mutant."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "mutation.md"

# What issue 13 calls trust-critical, written here rather than read from the configuration.
TRUST_CRITICAL = {
    "handler/webhooks.py",  # webhook signature and parsing
    "handler/events.py",  # routing
    "handler/intake.py",  # a routed delivery applied to the ledger
    "runkeys/oidc.py",
    "handler/registration.py",
    "runkeys/labels.py",
    "runkeys/masking.py",
    "runkeys/scrub.py",
    "runkeys/names.py",
    "runkeys/connections.py",  # the server a key was minted on, the allow list
    "runkeys/providers/postgres.py",
    "runkeys/providers/postgres_grants.py",
    "runkeys/providers/mysql.py",
    "runkeys/providers/redis_acl.py",
    "runkeys/providers/github_token.py",
    "runkeys/providers/deploy_key.py",
    "runkeys/retire.py",
    "handler/ownership.py",  # keep or delete, by GitHub's word
    "handler/ledger/secrets.py",  # keep a secret a newer lease wrote
    "handler/worker.py",
    "handler/policy.py",  # the broker's policy (issue 15): who may mint what
}


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "mutation_report", ROOT / "scripts" / "mutation_report.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


script = _load_script()


def groups() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        table: dict[str, Any] = tomllib.load(file)["tool"]["runkeys"]["mutation"]
    return table


def test_every_trust_critical_module_is_mutated() -> None:
    mutated = {path for group in groups().values() for path in group["mutate"]}
    assert mutated >= TRUST_CRITICAL


def test_every_group_names_tests_that_exist() -> None:
    for name, group in groups().items():
        assert group["tests"], name
        for test in group["tests"]:
            assert (ROOT / test).exists(), f"{name}: {test}"


def test_every_function_a_group_narrows_to_exists() -> None:
    """A function renamed or moved would silently leave the mutation run."""
    for group in groups().values():
        for path, names in group.get("functions", {}).items():
            assert path in group["mutate"]
            tree = ast.parse((ROOT / path).read_text())
            defined = {
                f"{cls.name}.{node.name}"
                for cls in tree.body
                if isinstance(cls, ast.ClassDef)
                for node in cls.body
                if isinstance(node, ast.FunctionDef)
            } | {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
            for wanted in names:
                pattern = re.escape(wanted).replace(r"\*", ".*")
                assert any(re.fullmatch(pattern, d) for d in defined), f"{path}: {wanted}"


def test_a_groups_mutmut_configuration_selects_its_files_and_tests() -> None:
    pyproject = script.load_pyproject()
    group = script.Group(
        name="x", mutate=("runkeys/names.py",), tests=("tests/unit/core/test_spec.py",)
    )
    written = tomllib.loads(script.group_pyproject(group, pyproject))
    assert written["tool"]["mutmut"]["only_mutate"] == ["runkeys/names.py"]
    assert written["tool"]["mutmut"]["pytest_add_cli_args_test_selection"] == [
        "tests/unit/core/test_spec.py"
    ]
    assert written["tool"]["mutmut"]["source_paths"] == ["runkeys", "handler"]
    assert written["tool"]["pytest"]["ini_options"] == pyproject["tool"]["pytest"]["ini_options"]


def test_patterns_name_only_the_functions_in_scope() -> None:
    group = script.Group(
        name="x",
        mutate=("runkeys/oidc.py", "runkeys/names.py"),
        tests=(),
        functions={"runkeys/oidc.py": ("_id", "KeySet.*")},
    )
    assert group.patterns() == [
        "runkeys.oidc.x__id__mutmut_*",
        "runkeys.oidc.xǁKeySetǁ*__mutmut_*",
        "runkeys.names.*",
    ]
    assert group.in_scope("runkeys/oidc.py", "runkeys.oidc.x__id__mutmut_2")
    assert not group.in_scope("runkeys/oidc.py", "runkeys.oidc.x__identity__mutmut_2")
    assert group.in_scope("runkeys/oidc.py", "runkeys.oidc.xǁKeySetǁkey__mutmut_1")
    assert not group.in_scope("runkeys/oidc.py", "runkeys.oidc.xǁRunnerOIDCǁurl__mutmut_1")


SOURCE = """
def check(name, outcome):
    if outcome != "revoked":
        raise ValueError("the outcome must be revoked", fix="say revoked")
    if not name:
        return "a name cannot be empty"
    if name == "two words":
        return None
    raise ApiError(422, "foreign_repository", "its secret is in another repository")
"""


def _mutant(line: int, was: str, now: str) -> Any:
    return script.Mutant("m.x_check__mutmut_1", "m.py", "survived", line, was, now, "")


@pytest.mark.parametrize(
    ("line", "was", "now", "rewords"),
    [
        # the text of a message, in a raise or a returned reason
        (
            4,
            'raise ValueError("the outcome must be revoked", fix="say revoked")',
            'raise ValueError("XXthe outcome must be revokedXX", fix="say revoked")',
            True,
        ),
        (6, 'return "a name cannot be empty"', 'return "A NAME CANNOT BE EMPTY"', True),
        # its advice left out or blanked, on the raise's own line
        (
            4,
            'raise ValueError("the outcome must be revoked", fix="say revoked")',
            'raise ValueError("the outcome must be revoked", )',
            True,
        ),
        (
            4,
            'raise ValueError("the outcome must be revoked", fix="say revoked")',
            'raise ValueError("the outcome must be revoked", fix=None)',
            True,
        ),
        # a value a decision compares with is not wording, even with a space in it
        (3, 'if outcome != "revoked":', 'if outcome != "XXrevokedXX":', False),
        (7, 'if name == "two words":', 'if name == "XXtwo wordsXX":', False),
        # an error code is a contract, not wording
        (
            9,
            'raise ApiError(422, "foreign_repository", "its secret is in another repository")',
            'raise ApiError(422, "XXforeign_repositoryXX", "its secret is in another repository")',
            False,
        ),
        (
            9,
            'raise ApiError(422, "foreign_repository", "its secret is in another repository")',
            'raise ApiError(423, "foreign_repository", "its secret is in another repository")',
            False,
        ),
        # the check itself, inside a message's line, is not wording either
        (5, "if not name:", "if name:", False),
    ],
)
def test_only_a_change_of_wording_is_taken_for_one(
    line: int, was: str, now: str, rewords: bool
) -> None:
    assert script.rewords(_mutant(line, was, now), ast.parse(SOURCE)) is rewords


def test_a_message_dropped_or_changed_in_its_f_string_is_rewording_only_once_it_survived() -> None:
    """Not run, such a mutant might raise another error from inside its f-string."""
    tree = ast.parse(SOURCE.replace('"its secret is in another repository"', 'f"its {name}"'))
    dropped = _mutant(6, 'return "a name cannot be empty"', "return None")
    assert script.rewords(dropped, tree)
    assert not script.rewords(dropped, tree, survived=False)
    inside = _mutant(
        9,
        'raise ApiError(422, "foreign_repository", f"its {name}")',
        'raise ApiError(422, "foreign_repository", f"its {None}")',
    )
    assert script.rewords(inside, tree)
    assert not script.rewords(inside, tree, survived=False)


def test_an_explanation_of_another_change_under_the_same_name_does_not_count() -> None:
    survivor = _mutant(7, 'if name == "two words":', 'if name != "two words":')
    tree = {"m.py": ast.parse(SOURCE)}
    moved = script.Explanation(survivor.name, "if not name:", "if name:", "harmless because …")
    assert script.judge([survivor], {survivor.name: moved}, tree).unexplained == [survivor]
    same = script.Explanation(survivor.name, survivor.was, survivor.now, "harmless because …")
    assert script.judge([survivor], {survivor.name: same}, tree).explained == [
        (survivor, "harmless because …")
    ]


def test_the_explanations_say_why() -> None:
    with (ROOT / "scripts" / "mutation_survivors.toml").open("rb") as file:
        entries = tomllib.load(file).get("survivor", [])
    names = [entry["mutant"] for entry in entries]
    assert len(names) == len(set(names))
    for entry in entries:
        assert set(entry) == {"mutant", "was", "now", "why"}, entry["mutant"]
        assert len(entry["why"]) > 20, entry["mutant"]


def test_the_report_covers_every_module_and_leaves_no_survivor_unexplained() -> None:
    report = REPORT.read_text()
    for group in groups().values():
        for path in group["mutate"]:
            assert f"| `{path}` |" in report, path
    assert "**0 unexplained**" in report
    assert "UNEXPLAINED" not in report
