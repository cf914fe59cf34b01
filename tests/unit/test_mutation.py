"""`make mutate` covers the trust-critical modules, and its committed report leaves no surviving
mutant unexplained. Cheap: reads pyproject.toml, the report and scripts/, runs no mutant."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import re
import shutil
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
    "handler/broker.py",  # broker mode: the request decided, minted, sealed, retired
    "handler/views/keys.py",
    "handler/ledger/broker.py",  # a request id mints once; the keys counted; the audit row
    "handler/ledger/alerts.py",  # an alert matches its own repository's leases only (issue 18)
    "handler/leaks.py",  # a leaked key retired, the alert resolved
    "handler/preflight.py",  # the check sub-action: this run's leases only
    "runkeys/leakscan.py",  # a found string's fingerprints
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
    moved = script.Explanation(survivor.name, "if not name:", "if name:", "harmless because …")
    assert script.judge([survivor], {survivor.name: moved}).unexplained == [survivor]
    same = script.Explanation(survivor.name, survivor.was, survivor.now, "harmless because …")
    assert script.judge([survivor], {survivor.name: same}).explained == [
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


def test_every_group_with_results_has_them_committed_in_the_report() -> None:
    """The report is made from docs/mutation/GROUP.json alone: what it says of a group is
    what that file holds."""
    rows: dict[str, str] = {}
    after = REPORT.read_text().partition("\n## Results\n")[2]
    for line in after.splitlines():  # the results table comes first
        rows.setdefault(line.split(" | ")[0][2:], line)
    for name in groups():
        results = ROOT / "docs" / "mutation" / f"{name}.json"
        if not results.exists():
            assert "**not run**" in rows[name], name
            continue
        data = json.loads(results.read_text())
        assert f"| {data['seconds']} s | `{data['commit']}`" in rows[name], name
        for mutant in data["mutants"]:
            assert mutant["status"] in (
                "killed",
                "timeout",
                "survived",
                "no tests",
                "not run",
                "suspicious",
            )
            if mutant["status"] not in ("killed", "timeout"):
                assert {"line", "was", "now", "rewording"} <= mutant.keys(), mutant["name"]


# --- the committed results, in a project of two groups made for the test ----------------------

PYPROJECT = """
[tool.mutmut]
source_paths = ["m"]

[tool.runkeys.mutation.alpha]
mutate = ["m/alpha.py"]
tests = ["t/test_alpha.py"]

[tool.runkeys.mutation.beta]
mutate = ["m/beta.py"]
tests = ["t/deep/test_beta.py"]

[tool.pytest.ini_options]
addopts = "-q"
"""

ALPHA = """
def check(name):
    if not name:
        raise ValueError("a name cannot be empty")
    return name == "octo"
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project of two groups, alpha and beta, with the script's paths pointed at it."""
    (tmp_path / "m").mkdir()
    (tmp_path / "t" / "deep").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "m" / "alpha.py").write_text(ALPHA)
    (tmp_path / "m" / "beta.py").write_text("def beta():\n    return 1\n")
    (tmp_path / "t" / "test_alpha.py").write_text("def test_alpha(): ...\n")
    (tmp_path / "t" / "deep" / "test_beta.py").write_text("def test_beta(): ...\n")
    (tmp_path / "t" / "conftest.py").write_text("")
    (tmp_path / "survivors.toml").write_text("")
    monkeypatch.setattr(script, "ROOT", tmp_path)
    monkeypatch.setattr(script, "WORK", tmp_path / "build" / "mutation")
    monkeypatch.setattr(script, "RESULTS", tmp_path / "docs" / "mutation")
    monkeypatch.setattr(script, "REPORT", tmp_path / "docs" / "mutation.md")
    monkeypatch.setattr(script, "EXPLANATIONS", tmp_path / "survivors.toml")
    return tmp_path


CHECK_LINE = 'return name == "octo"'
SURVIVOR = script.Mutant(
    "m.alpha.x_check__mutmut_5",
    "m/alpha.py",
    "survived",
    5,
    CHECK_LINE,
    'return name != "octo"',
    "--- m/alpha.py\n+++ m/alpha.py\n-    " + CHECK_LINE,
    False,
)
KILLED = script.Mutant("m.alpha.x_check__mutmut_1", "m/alpha.py", "killed", 3, "", "", "")
REWORDED = script.Mutant(
    "m.alpha.x_check__mutmut_3",
    "m/alpha.py",
    "survived",
    4,
    'raise ValueError("a name cannot be empty")',
    'raise ValueError("XXa name cannot be emptyXX")',
    "",
)
BETA = script.Mutant("m.beta.x_beta__mutmut_1", "m/beta.py", "killed", 2, "", "", "")


def _run(project: Path, monkeypatch: pytest.MonkeyPatch, mutants: dict[str, list[Any]]) -> None:
    """`run` as `make mutate MUTATE_GROUPS=…` calls it, with mutmut's part replaced: a finished
    run of each group left in build/mutation/GROUP/ with these mutants."""

    def run_group(group: Any, pyproject: Any, children: int) -> float:
        group.directory.mkdir(parents=True, exist_ok=True)
        ran = {"commit": "abc1234", "seconds": 42, **group.inputs()}
        (group.directory / "elapsed.json").write_text(json.dumps(ran))
        return 42.0

    monkeypatch.setattr(script, "run_group", run_group)
    monkeypatch.setattr(script, "read_group", lambda group: mutants[group.name])
    script.run(list(mutants))


def test_a_run_of_one_group_rewrites_its_results_only_and_the_report_keeps_the_others(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(project, monkeypatch, {"alpha": [KILLED, REWORDED], "beta": [BETA]})
    alpha = (project / "docs" / "mutation" / "alpha.json").read_bytes()
    assert script.report() == 0

    # beta again, on a fresh clone: nothing of alpha's run is in build/ any more
    shutil.rmtree(project / "build")
    _run(project, monkeypatch, {"beta": [dataclasses.replace(BETA, status="timeout")]})
    assert (project / "docs" / "mutation" / "alpha.json").read_bytes() == alpha
    assert script.report() == 0
    report = (project / "docs" / "mutation.md").read_text()
    assert "| alpha | `m/alpha.py` | 2 | 1 | 0 | 1 | 0 | 0 | 0 | 42 s | `abc1234` |" in report
    assert "| beta | `m/beta.py` | 1 | 0 | 1 | 0 | 0 | 0 | 0 | 42 s | `abc1234` |" in report
    assert "not run" not in capsys.readouterr().out


def test_a_group_never_run_is_reported_not_run_and_fails_the_report(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(project, monkeypatch, {"alpha": [KILLED]})
    assert script.report() == 1
    assert "not run: group beta" in capsys.readouterr().out
    assert "| beta | `m/beta.py` | 0 |" in (project / "docs" / "mutation.md").read_text()


def test_a_group_whose_code_or_tests_changed_since_its_run_is_stale_but_does_not_fail(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(project, monkeypatch, {"alpha": [KILLED], "beta": [BETA]})
    capsys.readouterr()
    assert script.report() == 0
    assert "stale" not in capsys.readouterr().out

    # a conftest.py the beta tests load changed: beta's results are of other tests
    (project / "t" / "conftest.py").write_text("import os\n")
    (project / "m" / "alpha.py").write_text(ALPHA.replace('"octo"', '"hubot"'))
    assert script.report() == 0
    out = capsys.readouterr().out
    assert "stale: group alpha, m/alpha.py, t/conftest.py changed" in out
    assert "stale: group beta, t/conftest.py changed (make mutate MUTATE_GROUPS=beta)" in out
    report = (project / "docs" / "mutation.md").read_text()
    assert "`abc1234` **stale**" in report
    assert "- beta: `t/conftest.py` changed: `make mutate MUTATE_GROUPS=beta`" in report

    # run again, beta is not stale any more; alpha still is
    _run(project, monkeypatch, {"beta": [BETA]})
    script.report()
    out = capsys.readouterr().out
    assert "stale: group alpha" in out
    assert "stale: group beta" not in out


def test_a_test_file_moved_unchanged_leaves_its_group_current_and_one_edited_on_the_way_does_not(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(project, monkeypatch, {"alpha": [KILLED], "beta": [BETA]})
    capsys.readouterr()
    (project / "t" / "unit").mkdir()
    (project / "t" / "test_alpha.py").rename(project / "t" / "unit" / "test_alpha.py")
    (project / "t" / "deep" / "test_beta.py").rename(project / "t" / "unit" / "test_beta.py")
    (project / "t" / "unit" / "test_beta.py").write_text("def test_beta(): assert True\n")
    moved = PYPROJECT.replace('"t/test_alpha.py"', '"t/unit/test_alpha.py"')
    (project / "pyproject.toml").write_text(moved.replace('"t/deep/', '"t/unit/'))
    assert script.report() == 0
    out = capsys.readouterr().out
    assert "stale: group alpha" not in out
    assert "stale: group beta, t/deep/test_beta.py, t/unit/test_beta.py changed" in out


def test_survivors_are_explained_from_the_committed_results_alone(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No build/ and the source changed since: the was/now saved in the results are what an
    explanation is matched with, and a rewording is known from them too."""
    _run(project, monkeypatch, {"alpha": [SURVIVOR, REWORDED], "beta": [BETA]})
    shutil.rmtree(project / "build")
    (project / "m" / "alpha.py").write_text("")
    saved = json.loads((project / "docs" / "mutation" / "alpha.json").read_text())
    assert {"name": SURVIVOR.name, "was": CHECK_LINE, "now": 'return name != "octo"'}.items() <= (
        saved["mutants"][0].items()
    )
    assert saved["mutants"][1]["rewording"] is True

    assert script.report() == 1  # the comparison turned around is not explained yet
    assert f"unexplained: m/alpha.py:5 {SURVIVOR.name}" in capsys.readouterr().out

    (project / "survivors.toml").write_text(
        f"[[survivor]]\nmutant = {json.dumps(SURVIVOR.name)}\nwas = {json.dumps(CHECK_LINE)}\n"
        'now = \'return name != "octo"\'\nwhy = "harmless, for this test\'s sake"\n'
        '[[survivor]]\nmutant = "m.alpha.x_check__mutmut_9"\nwas = "gone"\nnow = "too"\n'
        'why = "the code it was about is gone"\n'
    )
    assert script.report() == 0
    out = capsys.readouterr().out
    assert "unexplained" not in out
    assert "not needed: explanation of m.alpha.x_check__mutmut_9" in out
    report = (project / "docs" / "mutation.md").read_text()
    assert "1 equivalent or harmless (explained below), 1 that only reword an error" in report
    assert "harmless, for this test's sake" in report


def test_a_pending_explanation_is_listed_before_anything_else_and_does_not_fail(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(project, monkeypatch, {"alpha": [SURVIVOR], "beta": [BETA]})
    (project / "survivors.toml").write_text(
        f"[[survivor]]\nmutant = {json.dumps(SURVIVOR.name)}\nwas = {json.dumps(CHECK_LINE)}\n"
        'now = \'return name != "octo"\'\nwhy = "pending: a test of octo\'s name"\n'
    )
    assert script.report() == 0
    report = (project / "docs" / "mutation.md").read_text()
    assert "**1 pending**" in report
    assert report.index("## Pending") < report.index("## Equivalent or harmless")


# --- scripts/mutation_pytest.py, the plugin in every run of a group's tests ------------------

pytest_plugins = ["pytester"]

PLUGIN_TESTS = """
import pytest

def test_quick_and_passing(request):
    print("LIMIT", getattr(request.node.get_closest_marker("timeout"), "args", None))

def test_killer():
    assert False

@pytest.mark.timeout(3)
def test_with_its_own_limit(request):
    print("LIMIT", request.node.get_closest_marker("timeout").args)
"""


@pytest.fixture
def plugin(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    timing = pytester.path / "group.timing.jsonl"
    monkeypatch.setenv("RUNKEYS_MUTATION_TIMING", str(timing))
    pytester.makepyfile(test_group=PLUGIN_TESTS)
    # mutmut's stats: each test's time, in the directory the tests run from
    took = {"test_quick_and_passing": 1.0, "test_with_its_own_limit": 1.5, "test_killer": 2.0}
    stats = {"duration_by_test": {f"test_group.py::{name}": s for name, s in took.items()}}
    (pytester.path / "mutmut-stats.json").write_text(json.dumps(stats))
    return timing


def test_a_mutants_tests_start_with_those_that_killed_its_functions_other_mutants(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, plugin: Path
) -> None:
    monkeypatch.setenv("MUTANT_UNDER_TEST", "m.x_check__mutmut_1")
    result = pytester.runpytest("-p", "mutation_pytest", "-x", "-s")
    result.assert_outcomes(passed=2, failed=1)  # the quickest first
    assert plugin.with_suffix(".kills").read_text() == "m.x_check\ttest_group.py::test_killer\n"

    monkeypatch.setenv("MUTANT_UNDER_TEST", "m.x_check__mutmut_2")
    pytester.runpytest("-p", "mutation_pytest", "-x").assert_outcomes(failed=1)
    took_order = ["test_quick_and_passing", "test_with_its_own_limit", "test_killer"]
    runs = [json.loads(line) for line in plugin.read_text().splitlines()]
    assert [list(run["tests"]) for run in runs] == [
        [f"test_group.py::{name}" for name in took_order],
        ["test_group.py::test_killer"],
    ]
    assert [run["mutant"] for run in runs] == ["m.x_check__mutmut_1", "m.x_check__mutmut_2"]


def test_a_mutants_tests_get_a_hang_limit_of_twenty_times_their_time_unless_they_have_one(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, plugin: Path
) -> None:
    monkeypatch.setenv("MUTANT_UNDER_TEST", "m.x_check__mutmut_1")
    result = pytester.runpytest("-p", "mutation_pytest", "-s", "-k", "not killer")
    result.stdout.fnmatch_lines(["*LIMIT (20.0,)*", "*LIMIT (3,)*"])  # 20 x 1 s; its own 3 s

    # not a mutant (mutmut's stats and clean runs): no limit added, no order changed
    monkeypatch.setenv("MUTANT_UNDER_TEST", "stats")
    result = pytester.runpytest("-p", "mutation_pytest", "-s", "-k", "not killer and not own")
    result.stdout.fnmatch_lines(["*LIMIT None*"])
