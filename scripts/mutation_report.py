"""Mutation testing of runkeys' trust-critical modules (`make mutate`), and its report.

    python scripts/mutation_report.py run [GROUP ...]   mutmut, one group at a time, then save
    python scripts/mutation_report.py save GROUP ...    a finished run in build/mutation/GROUP/
                                                        → docs/mutation/GROUP.json
    python scripts/mutation_report.py recheck GROUP ... its survivors again, after new tests
    python scripts/mutation_report.py report            docs/mutation.md from every group's
                                                        docs/mutation/GROUP.json; fails on a
                                                        survivor that nobody has explained

Each `[tool.runkeys.mutation]` group runs in its own directory under build/mutation/, against
its own tests. Its results are committed, docs/mutation/GROUP.json (each mutant's status, a
survivor's changed line, the run's time and commit, a hash of each file it mutated or tested),
and the report is made from all of them; a group whose files changed since is **stale**, a
warning. A survivor is explained in scripts/mutation_survivors.toml by its name and the text of
the line it changes, or by the `wording` rule (it only rewords an error)."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "mutation"
REPORT = ROOT / "docs" / "mutation.md"
RESULTS = ROOT / "docs" / "mutation"
EXPLANATIONS = ROOT / "scripts" / "mutation_survivors.toml"
PENDING = "pending:"
# What each exit code mutmut records means here; `None`: the mutant was not run.
CAUGHT = ("killed", "timeout")
STATUS = {0: "survived", 1: "killed", 3: "killed", 33: "no tests", 36: "timeout", None: "not run"}
TIMEOUT_CODES = (-24, 24, 152, 255)
# Not what the tests check: left where they are, for a group's directory to link to.
NOT_LINKED = {".git", ".venv", "build", "pyproject.toml", "mutants", ".mypy_cache", ".ruff_cache"}


@dataclass(frozen=True)
class Group:
    name: str
    mutate: tuple[str, ...]
    tests: tuple[str, ...]
    functions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return WORK / self.name

    @property
    def results(self) -> Path:
        return RESULTS / f"{self.name}.json"

    def inputs(self) -> dict[str, dict[str, str]]:
        """A hash of each file the group's results depend on: the files mutated, and the test
        files with the conftest.py files pytest loads for them."""
        tests = set(self.tests)
        for test in self.tests:
            for parent in Path(test).parents:
                if (ROOT / parent / "conftest.py").exists():
                    tests.add(str(parent / "conftest.py"))
        return {
            "mutated": {path: _hash(path) for path in self.mutate},
            "tests": {path: _hash(path) for path in sorted(tests)},
        }

    def patterns(self) -> list[str]:
        """mutmut's names of the mutants in scope: every function of a file, or those listed."""
        if not self.functions:
            return []
        return [pattern for path in self.mutate for pattern in _patterns(path, self.functions)]

    def in_scope(self, path: str, mutant: str) -> bool:
        names = self.functions.get(path)
        if names is None:
            return True
        function = function_of(mutant)
        return any(re.fullmatch(re.escape(n).replace(r"\*", ".*"), function) for n in names)


def _hash(path: str) -> str:
    file = ROOT / path
    return hashlib.sha256(file.read_bytes()).hexdigest()[:16] if file.exists() else "missing"


def _patterns(path: str, functions: Mapping[str, tuple[str, ...]]) -> Iterator[str]:
    module = module_of(path)
    names = functions.get(path)
    if names is None:
        yield f"{module}.*"
        return
    for name in names:
        cls, _, method = name.rpartition(".")
        yield f"{module}.{'xǁ' + cls + 'ǁ' if cls else 'x_'}{method}__mutmut_*"


def module_of(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def function_of(mutant: str) -> str:
    """`Class.method` or `function` of a mutant name such as `m.xǁKeySetǁkey__mutmut_3`."""
    mangled = mutant.rpartition(".")[2].partition("__mutmut_")[0]
    if mangled.startswith("xǁ"):
        cls, _, method = mangled[2:].partition("ǁ")
        return f"{cls}.{method}"
    return mangled.removeprefix("x_")


def load_pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def load_groups(pyproject: Mapping[str, Any] | None = None) -> list[Group]:
    table = (pyproject or load_pyproject())["tool"]["runkeys"]["mutation"]
    return [
        Group(
            name=name,
            mutate=tuple(spec["mutate"]),
            tests=tuple(spec["tests"]),
            functions={path: tuple(names) for path, names in spec.get("functions", {}).items()},
        )
        for name, spec in table.items()
    ]


# --- run ------------------------------------------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)  # strings and numbers: JSON's spelling is TOML's


def group_pyproject(group: Group, pyproject: Mapping[str, Any]) -> str:
    """The configuration mutmut and pytest read in a group's directory."""
    mutmut = dict(pyproject["tool"]["mutmut"])
    mutmut["only_mutate"] = list(group.mutate)
    mutmut["pytest_add_cli_args_test_selection"] = list(group.tests)
    mutmut["pytest_add_cli_args"] = [
        *mutmut.get("pytest_add_cli_args", []),
        "-p",
        "mutation_pytest",
    ]
    lines = ["[tool.mutmut]"] + [f"{key} = {_toml(value)}" for key, value in mutmut.items()]
    lines.append("\n[tool.pytest.ini_options]")
    pytest = pyproject["tool"]["pytest"]["ini_options"]
    lines += [f"{key} = {_toml(value)}" for key, value in pytest.items()]
    return "\n".join(lines) + "\n"


def run_group(group: Group, pyproject: Mapping[str, Any], children: int) -> float:
    """Mutate one group in a fresh directory; the seconds it took."""
    if group.directory.exists():
        shutil.rmtree(group.directory)
    group.directory.mkdir(parents=True)
    for entry in ROOT.iterdir():
        if entry.name not in NOT_LINKED:
            (group.directory / entry.name).symlink_to(entry)
    (group.directory / "pyproject.toml").write_text(group_pyproject(group, pyproject))
    # What the run is of, taken before it starts: the files may change while it runs.
    ran: dict[str, Any] = {"commit": _commit(group), **group.inputs()}
    for old in (".timing.jsonl", ".timing.kills"):
        (WORK / f"{group.name}{old}").unlink(missing_ok=True)
    started = time.monotonic()
    with (WORK / f"{group.name}.log").open("w") as log:
        # The first run makes every mutant and learns which tests reach which function, trying
        # the mutants of one function; the second tries the rest, but for rewordings.
        _mutmut(group, log, children, group.patterns()[:1] or [f"{module_of(group.mutate[0])}.*"])
        rest = [m.name for m in read_group(group, diffs=False) if m.status == "not run"]
        trees = {path: ast.parse((ROOT / path).read_text()) for path in group.mutate}
        candidates = read_group(group, only=set(rest))
        wanted = [m.name for m in candidates if not rewords(m, trees[m.path], survived=False)]
        if wanted:
            _mutmut(group, log, children, wanted)
    seconds = time.monotonic() - started
    ran["seconds"] = round(seconds)
    (group.directory / "elapsed.json").write_text(json.dumps(ran))
    return seconds


def _commit(group: Group) -> str:
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--", *group.mutate, *group.tests)
    return commit + ("+changes" if dirty else "")


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def _mutmut(group: Group, log: IO[str], children: int, names: list[str]) -> None:
    env = {
        **os.environ,
        "RUNKEYS_TEST_LEDGERS": "sqlite",
        # scripts/mutation_pytest.py: where the time went, and the tests in a quicker order
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "scripts"), os.environ.get("PYTHONPATH")])
        ),
        "RUNKEYS_MUTATION_TIMING": str(WORK / f"{group.name}.timing.jsonl"),
    }
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(children), *names]
    log.flush()
    done = subprocess.run(
        command, cwd=group.directory, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
    )
    if done.returncode != 0:
        sys.exit(f"mutmut failed on group {group.name}: see {WORK / group.name}.log")


def recheck(names: list[str]) -> None:
    """Run a group's surviving mutants again, against its tests as configured now: after a
    test was added to kill them, without mutating the whole group again. The time is added to
    the group's, and the commit too."""
    pyproject = load_pyproject()
    groups = {g.name: g for g in load_groups(pyproject)}
    children = int(os.environ.get("MUTATE_CHILDREN") or os.cpu_count() or 2)
    for name in names:
        group = groups[name]
        done = group.directory / "elapsed.json"
        # A run stopped part way has no time yet: the recheck finishes it, and says so.
        ran: dict[str, Any] = {"seconds": 0, "commit": "part"}
        if done.exists():
            ran = json.loads(done.read_text())
        trees = {path: ast.parse((ROOT / path).read_text()) for path in group.mutate}
        survivors = [
            m.name
            for m in read_group(group)
            if m.status in ("survived", "no tests", "suspicious")
            or (m.status == "not run" and not rewords(m, trees[m.path], survived=False))
        ]
        print(f"recheck {name}: {len(survivors)} survivors and mutants not run", flush=True)
        (group.directory / "pyproject.toml").write_text(group_pyproject(group, pyproject))
        before = {path: _verdicts(group, path) for path in group.mutate}
        started = time.monotonic()
        if survivors:
            with (WORK / f"{group.name}.log").open("a") as log:
                _mutmut(group, log, children, survivors)
        seconds = time.monotonic() - started
        # mutmut forgets every verdict when the tests it selects change; the others stand, as
        # tests added can only kill more.
        for path, verdicts in before.items():
            meta_path = group.directory / "mutants" / (path + ".meta")
            meta = json.loads(meta_path.read_text())
            for key, code in verdicts.items():
                if key not in survivors:
                    meta["exit_code_by_key"][key] = code
            meta_path.write_text(json.dumps(meta, indent=4))
        commits = f"{ran.get('commit', '?')}, {_commit(group)}"
        # The survivors ran against the tests as they are now: the hashes are today's.
        ran = {**ran, **group.inputs(), "seconds": ran["seconds"] + round(seconds)}
        ran["commit"] = commits
        (group.directory / "elapsed.json").write_text(json.dumps(ran))
        print(f"  done in {seconds:.0f} s", flush=True)
        save([name])


def _verdicts(group: Group, path: str) -> dict[str, int | None]:
    meta = json.loads((group.directory / "mutants" / (path + ".meta")).read_text())
    verdicts: dict[str, int | None] = meta["exit_code_by_key"]
    return verdicts


def run(names: list[str]) -> None:
    pyproject = load_pyproject()
    groups = load_groups(pyproject)
    unknown = set(names) - {g.name for g in groups}
    if unknown:
        sys.exit(f"no such group: {', '.join(sorted(unknown))}")
    children = int(os.environ.get("MUTATE_CHILDREN") or os.cpu_count() or 2)
    chosen = [g for name in names for g in groups if g.name == name] if names else groups
    jobs = int(os.environ.get("MUTATE_JOBS") or 1)
    if jobs > 1 and len(chosen) > 1:
        _side_by_side([g.name for g in chosen], jobs)
        return
    for group in chosen:
        print(f"mutate {group.name}: {', '.join(group.mutate)}", flush=True)
        seconds = run_group(group, pyproject, children)
        print(f"  done in {seconds:.0f} s", flush=True)
        save([group.name])


def _side_by_side(names: list[str], jobs: int) -> None:
    """Groups `jobs` at a time, each in a process of its own (a group's run changes directory
    to read mutmut's results); one's output after another's, as each ends."""
    waiting = list(names)
    running: dict[str, subprocess.Popen[str]] = {}
    failed = []
    while waiting or running:
        while waiting and len(running) < jobs:
            name = waiting.pop(0)
            command = [sys.executable, __file__, "run", name]
            running[name] = subprocess.Popen(
                command,
                env={**os.environ, "MUTATE_JOBS": "1"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        ended = [name for name, process in running.items() if process.poll() is not None]
        for name in ended:
            process = running.pop(name)
            output, _ = process.communicate()
            print(output, end="", flush=True)
            if process.returncode != 0:
                failed.append(name)
        if not ended:
            time.sleep(2)
    if failed:
        sys.exit(f"mutmut failed on group {', '.join(failed)}")


def save(names: list[str]) -> None:
    """A finished run in build/mutation/GROUP/ (made here or copied from elsewhere) → the
    group's committed results, docs/mutation/GROUP.json."""
    groups = {g.name: g for g in load_groups()}
    unknown = set(names) - set(groups)
    if unknown:
        sys.exit(f"no such group: {', '.join(sorted(unknown))}")
    for name in names:
        group = groups[name]
        done = group.directory / "elapsed.json"
        if not done.exists():
            sys.exit(f"group {name} has no finished run in {group.directory}")
        ran = json.loads(done.read_text())
        if "mutated" not in ran:  # a run by an older script: its files as they are now
            print(f"save {name}: the run recorded no hashes; taking today's files", flush=True)
            ran.update(group.inputs())
        trees = {path: ast.parse((ROOT / path).read_text()) for path in group.mutate}
        read = read_group(group)
        mutants = [_saved(m, trees[m.path]) for m in read]
        durations: dict[str, float] = {}
        for path in group.mutate:
            meta = group.directory / "mutants" / (path + ".meta")
            if meta.exists():
                durations.update(json.loads(meta.read_text()).get("durations_by_key", {}))
        results = {
            "group": name,
            "seconds": ran["seconds"],
            "commit": ran.get("commit", "?"),
            "mutated": ran["mutated"],
            "tests": ran["tests"],
            "profile": profile(WORK / f"{name}.timing.jsonl", read, durations),
            "mutants": mutants,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        group.results.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        print(f"saved {group.results.relative_to(ROOT)}", flush=True)


def _saved(mutant: Mutant, tree: ast.Module) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": mutant.name, "path": mutant.path, "status": mutant.status}
    if mutant.status in CAUGHT:
        return entry
    rewording = rewords(mutant, tree, survived=mutant.status != "not run")
    entry.update(line=mutant.line, was=mutant.was, now=mutant.now, rewording=rewording)
    if not rewording:
        entry["diff"] = mutant.diff
    return entry


def profile(timing: Path, mutants: list[Mutant], durations: Mapping[str, float]) -> dict[str, Any]:
    """Where a run's time went: mutmut's runs of all the tests (stats, clean, forced failure;
    scripts/mutation_pytest.py's lines), and each mutant's worker time by verdict (mutmut's
    own record, which has the mutants stopped at a time limit too)."""
    whole: Counter[str] = Counter()  # mutmut runs them once per `mutmut run`: added up
    tests: Counter[str] = Counter()
    if timing.exists():
        for line in timing.read_text().splitlines():
            session = json.loads(line)
            if _is_mutant(session["mutant"]):
                tests.update(session["tests"])
            else:
                whole[session["mutant"] or "clean"] += session["seconds"]
    by_verdict: defaultdict[str, float] = defaultdict(float)
    for mutant in mutants:
        by_verdict[mutant.status] += durations.get(mutant.name, 0.0)
    ran = [m for m in mutants if m.name in durations]
    slowest = sorted(ran, key=lambda m: -durations[m.name])[:5]
    return {
        "whole_suite_seconds": {kind: round(seconds, 1) for kind, seconds in whole.items()},
        "mutants_run": len(ran),
        "mutant_seconds": round(sum(by_verdict.values())),
        "mutant_seconds_by_verdict": {k: round(v) for k, v in by_verdict.items() if v},
        "slowest_mutants": {m.name: round(durations[m.name], 1) for m in slowest},
        "slowest_tests_over_all_mutants": {t: round(x, 1) for t, x in tests.most_common(5)},
    }


def _is_mutant(name: str) -> bool:
    return "__mutmut_" in name


# --- report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    status: str
    line: int
    was: str  # the source line it changes, stripped ("" when it only adds one)
    now: str  # what it becomes ("" when it removes the line)
    diff: str
    rewording: bool = False  # it only rewords an error (`rewords`, decided when saved)


@dataclass(frozen=True)
class Explanation:
    mutant: str
    was: str
    now: str
    why: str


def status_of(code: int | None) -> str:
    if code in TIMEOUT_CODES:
        return "timeout"
    return STATUS.get(code, "suspicious")


def read_group(group: Group, *, diffs: bool = True, only: set[str] | None = None) -> list[Mutant]:
    """The group's mutants in scope (or those of `only`), with their diffs (read in its
    directory, as mutmut wrote them)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant  # noqa: PLC0415

    mutants = []
    cwd = Path.cwd()
    os.chdir(group.directory)
    try:
        for path in group.mutate:
            meta = json.loads(Path("mutants", path + ".meta").read_text())
            source = (ROOT / path).read_text().splitlines()
            tree = ast.parse("\n".join(source))
            for name, code in sorted(meta["exit_code_by_key"].items(), key=_natural):
                if not group.in_scope(path, name) or (only is not None and name not in only):
                    continue
                diff = get_diff_for_mutant(name, path=path) if diffs else ""
                was, now = _changed(diff)
                first = _first_changed(diff) or was or now
                line = _line_of(tree, source, function_of(name), first, now)
                mutants.append(Mutant(name, path, status_of(code), line, was, now, diff))
    finally:
        os.chdir(cwd)
    return mutants


def _natural(item: tuple[str, Any]) -> tuple[str, int]:
    head, _, number = item[0].rpartition("__mutmut_")
    return head, int(number) if number.isdigit() else 0


def _changed(diff: str) -> tuple[str, str]:
    lines = diff.splitlines()[2:]
    removed = [line[1:].strip() for line in lines if line.startswith("-")]
    added = [line[1:].strip() for line in lines if line.startswith("+")]
    return " ".join(removed), " ".join(added)


def _first_changed(diff: str) -> str:
    lines = diff.splitlines()[2:]
    return next((line[1:].strip() for line in lines if line[:1] in "-+" and line[1:].strip()), "")


def _line_of(tree: ast.Module, source: list[str], function: str, was: str, now: str) -> int:
    """The line of `source` the mutant changes: where `was` is found in the function."""
    node = _find_function(tree, function)
    if node is None:
        return 0
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    last = node.end_lineno or node.lineno
    wanted = was or now
    for number in range(first, last + 1):
        if source[number - 1].strip() == wanted:
            return number
    for number in range(first, last + 1):  # a change spread over lines: its first one
        if wanted and source[number - 1].strip() and source[number - 1].strip() in wanted:
            return number
    return node.lineno


def _find_function(tree: ast.Module, function: str) -> ast.FunctionDef | None:
    cls, _, name = function.rpartition(".")
    scope: list[ast.stmt] = tree.body
    if cls:
        found = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls), None)
        if found is None:
            return None
        scope = found.body
    return next((n for n in scope if isinstance(n, ast.FunctionDef) and n.name == name), None)


# A string literal, with its prefix, in one line of Python.
_STRING = re.compile(
    r"""(?P<prefix>[rRbBuUfF]{0,2})(?P<quote>"|')(?P<body>(?:\\.|(?!(?P=quote)).)*)(?P=quote)"""
)
# An error's advice: `fix="…"`, `fix=f"…"` or `docs=NAME`, with a comma after it.
_ADVICE = re.compile(
    r"""\b(?P<key>fix|docs)=(?:[rf]?"(?:\\.|[^"\\])*"|[A-Za-z_][A-Za-z0-9_.]*)\s*,?"""
)


def _squash(code: str) -> str:
    """Code without its spaces, or a comma before a closing bracket: what a change of layout
    cannot tell apart."""
    return re.sub(r",(?=[)\]]|$)", "", re.sub(r"\s+", "", code))


def rewords(mutant: Mutant, tree: ast.Module, *, survived: bool = True) -> bool:
    """Whether the mutant only changes what an error or a refusal says to a person, inside a
    `raise`, a `return` of a message or a call to an error: the text of a message with words in
    it (mutmut's `XX…XX` and case changes), or an error's `fix` or `docs` advice left out. Of a
    mutant that `survived` the tests, also: a message replaced by None, or changed only inside
    its f-string (a mutant not run might raise another error from in there)."""
    if not mutant.was or not _in_message(tree, mutant.line):
        return False
    for advice in _ADVICE.finditer(mutant.was):
        start, end = advice.span()
        without = mutant.was[:start] + mutant.was[end:]
        blanked = mutant.was[:start] + f"{advice['key']}=None" + mutant.was[end:]
        if _squash(mutant.now) in (_squash(without), _squash(blanked)):
            return True
    for literal in _STRING.finditer(mutant.was):
        body = literal["body"]
        if " " not in body:
            continue
        start, end = literal.span()
        before, after = mutant.was[:start], mutant.was[end:]
        formatted = "f" in literal["prefix"].lower()
        if not formatted:
            body_start, body_end = literal.span("body")
            for changed in (f"XX{body}XX", body.lower(), body.upper()):
                if changed != body and (
                    mutant.was[:body_start] + changed + mutant.was[body_end:] == mutant.now
                ):
                    return True
        if not survived or not mutant.now.startswith(before) or not mutant.now.endswith(after):
            continue
        middle = mutant.now[len(before) : len(mutant.now) - len(after)]
        if middle == "None":
            return True
        other = _STRING.fullmatch(middle)
        if formatted and other is not None and "f" in other["prefix"].lower():
            return True
    return False


def _in_message(tree: ast.Module, line: int) -> bool:
    for node in ast.walk(tree):
        end = getattr(node, "end_lineno", None)
        if end is None or not node.lineno <= line <= end:  # type: ignore[attr-defined]
            continue
        if isinstance(node, ast.Raise):
            return True
        if isinstance(node, ast.Return) and _is_text(node.value):
            return True
        if isinstance(node, ast.Call) and _names_an_error(node.func):
            return True
    return False


def _is_text(node: ast.expr | None) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return _is_text(node.left) or _is_text(node.right)
    return False


def _names_an_error(func: ast.expr) -> bool:
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    return name.endswith(("Error", "Exception"))


def load_explanations() -> dict[str, Explanation]:
    with EXPLANATIONS.open("rb") as file:
        entries = tomllib.load(file).get("survivor", [])
    return {
        e["mutant"]: Explanation(e["mutant"], e.get("was", ""), e.get("now", ""), e["why"])
        for e in entries
    }


@dataclass
class Verdicts:
    explained: list[tuple[Mutant, str]] = field(default_factory=list)
    pending: list[tuple[Mutant, str]] = field(default_factory=list)
    reworded: list[Mutant] = field(default_factory=list)
    unexplained: list[Mutant] = field(default_factory=list)


def judge(mutants: list[Mutant], explanations: Mapping[str, Explanation]) -> Verdicts:
    verdicts = Verdicts()
    for mutant in mutants:
        if mutant.status in CAUGHT:
            continue
        known = explanations.get(mutant.name)
        if known is not None and (known.was, known.now) == (mutant.was, mutant.now):
            target = verdicts.pending if known.why.startswith(PENDING) else verdicts.explained
            target.append((mutant, known.why))
        elif mutant.rewording:
            verdicts.reworded.append(mutant)
        else:
            verdicts.unexplained.append(mutant)
    return verdicts


COLUMNS = ("killed", "timeout", "survived", "no tests", "rewording, not run", "not run")


@dataclass(frozen=True)
class Results:
    """A group's committed results (docs/mutation/GROUP.json)."""

    seconds: int
    commit: str
    inputs: Mapping[str, str]  # path → hash, files mutated and test files alike
    mutants: list[Mutant]
    profile: Mapping[str, Any] = field(default_factory=dict)


def load_results(group: Group) -> Results | None:
    if not group.results.exists():
        return None
    data = json.loads(group.results.read_text())
    mutants = [
        Mutant(
            name=m["name"],
            path=m["path"],
            status=m["status"],
            line=m.get("line", 0),
            was=m.get("was", ""),
            now=m.get("now", ""),
            diff=m.get("diff", ""),
            rewording=m.get("rewording", False),
        )
        for m in data["mutants"]
        if group.in_scope(m["path"], m["name"])
    ]
    inputs = {**data["mutated"], **data["tests"]}
    return Results(data["seconds"], data["commit"], inputs, mutants, data.get("profile", {}))


def changed_since(group: Group, results: Results) -> list[str]:
    """The files of a group that differ from those its results were made with (or that it
    has gained or lost since): its results are stale."""
    now = {path: digest for table in group.inputs().values() for path, digest in table.items()}
    changed = {p for p in now.keys() | results.inputs.keys() if now.get(p) != results.inputs.get(p)}
    # A file moved unchanged (`git mv`) is the same input: only its path is new.
    gone = Counter(results.inputs[p] for p in changed if p not in now)
    came = Counter(now[p] for p in changed if p not in results.inputs)
    moved = gone & came
    return sorted(
        p
        for p in changed
        if not (p in now) ^ (p in results.inputs) or (now.get(p) or results.inputs[p]) not in moved
    )


def render(
    groups: list[Group],
    results: Mapping[str, Results | None],
    *,
    verdicts: Verdicts,
    stale: Mapping[str, list[str]],
    unneeded: list[Explanation],
) -> str:
    out = [HEADER.strip(), "", "## Results", ""]
    out.append(
        "Time: each group's whole run (making the mutants, the tests once to learn which reach "
        "what, then the mutants) on the 2-core machine the tests run on, shared with other "
        "work; commit: the code run. A group's results are docs/mutation/GROUP.json."
    )
    out.append("")
    out.append("| group | module | mutants | " + " | ".join(COLUMNS) + " | time | commit |")
    out.append("|---|---|---:|" + "---:|" * len(COLUMNS) + "---:|---|")
    total: Counter[str] = Counter()
    seconds = 0
    for group in groups:
        ran = results[group.name]
        if ran is not None:
            seconds += ran.seconds
        for index, path in enumerate(group.mutate):
            mutants = ran.mutants if ran is not None else []
            counts = Counter(_column(m) for m in mutants if m.path == path)
            total.update(counts)
            took = commit = name = ""
            if index == 0:
                name = group.name
                took = f"{ran.seconds} s" if ran is not None else ""
                commit = f"`{ran.commit}`" if ran is not None else "**not run**"
                if group.name in stale:
                    commit += " **stale**"
            cells = " | ".join(str(counts[c]) for c in COLUMNS)
            out.append(f"| {name} | `{path}` | {counts.total()} | {cells} | {took} | {commit} |")
    cells = " | ".join(f"**{total[c]}**" for c in COLUMNS)
    out.append(f"| **all** | | **{total.total()}** | {cells} | **{seconds} s** | |")
    out += [
        "",
        f"Surviving: {len(verdicts.explained)} equivalent or harmless (explained below), "
        f"{len(verdicts.reworded)} that only reword an error, **{len(verdicts.pending)} "
        f"pending** (real gaps not killed yet), **{len(verdicts.unexplained)} unexplained**.",
    ]
    out += _profiles(groups, results)
    if stale:
        out += ["", "## Stale groups", ""]
        out.append(
            "Their code or tests changed since their run: the results above are those of the "
            "files as they were. Run them again with the command given."
        )
        out.append("")
        out += [
            f"- {name}: {', '.join(f'`{p}`' for p in paths)} changed: "
            f"`make mutate MUTATE_GROUPS={name}`"
            for name, paths in stale.items()
        ]
    if verdicts.pending:
        out += ["", "## Pending: gaps not killed yet", ""]
        out.append(
            "Real gaps, each with what is still to be done about it (its test on the way in "
            "another change, or not looked at yet): listed first so they are not forgotten."
        )
        out += [_entry(m, why) for m, why in verdicts.pending]
    if verdicts.unexplained:
        out += ["", "## Unexplained survivors", ""]
        out.append(
            "Each is a gap in the tests until a test kills it or scripts/mutation_survivors.toml "
            "says why it cannot matter."
        )
        out += [_entry(m, "**UNEXPLAINED**") for m in verdicts.unexplained]
    out += ["", "## Equivalent or harmless survivors", ""]
    out += [_entry(m, why) for m, why in verdicts.explained] or ["None."]
    out += ["", "## Survivors that only reword an error", ""]
    out.append(
        "A message's text, or its `fix`/`docs` advice, inside a `raise`, a returned reason or "
        "an error's constructor: the refusal happens either way, so no decision depends on it."
    )
    out.append("")
    out += [
        f"- `{m.path}:{m.line}` `{m.name.rpartition('.')[2]}` ({m.status}): `{m.now}`"
        for m in verdicts.reworded
    ]
    if unneeded:
        out += ["", "## Explanations no mutant needs any more", ""]
        out += [f"- `{e.mutant}`: `{e.was}` → `{e.now}`" for e in unneeded]
    return "\n".join(out) + "\n"


def _profiles(groups: list[Group], results: Mapping[str, Results | None]) -> list[str]:
    """Where each group's time went (scripts/mutation_pytest.py's record of the run)."""
    rows = []
    for group in groups:
        ran = results[group.name]
        if ran is None or not ran.profile:
            continue
        profile = ran.profile
        whole = profile["whole_suite_seconds"]
        slowest = next(iter(profile["slowest_mutants"].items()), ("", 0))
        rows.append(
            f"| {group.name} | {round(whole.get('stats', 0))} s | "
            f"{round(sum(v for k, v in whole.items() if k != 'stats'))} s | "
            f"{profile['mutants_run']} | {profile['mutant_seconds']} s | "
            f"{_verdict_seconds(profile.get('mutant_seconds_by_verdict', {}))} | "
            f"`{slowest[0].rpartition('.')[2]}` {round(slowest[1])} s |"
        )
    if not rows:
        return []
    return [
        "",
        "Where the time went: mutmut's run of all the group's tests to learn which reach what "
        "(stats), its other runs of them (a clean run before the mutants, one that must fail), "
        "then the mutants, two at a time (their seconds added up).",
        "",
        "| group | stats | other whole runs | mutants run | mutants' seconds | of which | "
        "slowest mutant |",
        "|---|---:|---:|---:|---:|---|---|",
        *rows,
    ]


def _verdict_seconds(seconds: Mapping[str, int]) -> str:
    return ", ".join(f"{status} {value} s" for status, value in sorted(seconds.items()))


def _column(mutant: Mutant) -> str:
    if mutant.status == "not run" and mutant.rewording:
        return "rewording, not run"
    return "survived" if mutant.status == "suspicious" else mutant.status


def _entry(mutant: Mutant, why: str) -> str:
    diff = "\n".join(mutant.diff.splitlines()[2:])
    return (
        f"\n### `{mutant.path}:{mutant.line}` {mutant.status}: `{mutant.name}`\n\n{why}\n\n"
        f"```diff\n{diff}\n```"
    )


HEADER = """
# Mutation testing

`make mutate` breaks the trust-critical code one small change at a time (a comparison turned
around, a condition dropped, a constant changed) and runs the tests that reach the changed
function: a change no test notices is a check the suite does not really make. It uses
[mutmut](https://mutmut.readthedocs.io) 3, which is maintained, rewrites each function once into
all of its mutants behind a switch, records in one run of the tests which tests reach which
function, and then forks one worker per mutant that runs only those tests, stopping at the
first failure. cosmic-ray, the other maintained tool, rewrites and re-imports a module per
mutant and runs a whole test command each time: the same work, at many times the cost.

The modules are in groups (`[tool.runkeys.mutation]` in pyproject.toml), each mutated against
only the tests named for it, with the ledger on SQLite only. `make mutate` runs every group;
`make mutate MUTATE_GROUPS="oidc names"` runs those only. Each group's results are committed,
in docs/mutation/GROUP.json (every mutant's status; a survivor's changed line and diff; the
run's time and commit; a hash of each file it mutated and of each test file), and this page is
written from all of them by `scripts/mutation_report.py report`; it is not edited by hand. A
run made elsewhere is brought in with `scripts/mutation_report.py save GROUP` from its
build/mutation/GROUP/ directory.

How to read it: **killed** and **timeout** (a test hung or ran far past its time) are mutants
the tests catch. **survived** ones are each listed below with why they cannot matter (from
scripts/mutation_survivors.toml, matched by mutant name and the line it changes), as
rewording an error, or as **pending**: a real gap, with what is to be done about it;
**no tests**: no test in the group reaches the function; **rewording, not run**: a mutant
that only changes an error's literal text is not run at all; **not run**: mutmut did not get
to it. mutmut changes code inside functions only: module-level tables and patterns (the
regular expressions, the lists of reserved names) are checked by the tests of their own.
A group is **stale** when a file it mutates or a test file it runs changed since its run: a
warning naming the command to run it again, not a failure, since its results still say what
those tests did to that code. `make mutate` fails while any survivor is unexplained (a
pending one counts as explained only by its plan) or any group has no results.
`mutmut show NAME`, run in `build/mutation/GROUP/`, shows a mutant after a run.
`make mutate-why` applies again, one at a time, the five mutations an early spot check found
surviving (a signature compared on 4 bytes, the foreign-repository check reduced to owners, the
secret-name check at registration off, the discovery document's issuer unchecked, the
`quote_plus` masking form gone) and fails unless each makes its named test fail.

Where the time goes (measured with scripts/mutation_pytest.py, the plugin every run of a
group's tests loads, and saved with the group's results; the table below the results): mutmut
runs all of a group's tests once to learn which test reaches which function, once clean and
once forced to fail, then every mutant, two at a time, against the tests that reach its
function. Those whole-suite runs are a small part (masking: 37 s of 804 s); the mutants are
the rest. A survivor runs every test that reaches its function (a masking survivor, 700-odd
tests, 10 to 18 s on the loaded machine); a killed mutant stops at its first failing test, so
the plugin runs first the tests that killed the function's other mutants, then the quickest
(mutmut hands pytest a mutant's tests in no particular order). A mutant that makes a test hang
used to wait for mutmut's limit, 15 times the time of all its tests (50 to 68 s per hanging
scrub mutant, 541 of masking's 1379 worker-seconds): the plugin stops such a test at 20 times
its own time (10 s at least) and records a timeout, the same verdict. `MUTATE_JOBS=2` runs two
groups side by side, which keeps both cores busy while one group is in its single-process
whole-suite runs. The wall-clock limits are not tightened further: on a machine shared with
other work, a tighter limit would count a slow survivor as a timeout, that is as caught.

Measured on 2026-12-06, each group's whole run before these changes (the previous report, its
machine "loaded") and after; the verdicts after are those before, mutant by mutant (but for a
few hanging mutants, caught as a timeout now where a test failing at its time limit caught
them before):

| group | before | after | what changed (below) |
|---|---:|---:|---|
| webhooks | 776 s | 176 s | killers first |
| oidc | 1749 s | 241 s | one issuer for the claims tests, killers first |
| names | 170 s | 17 s | the service tests left out |
| masking | 799 s | 117 s | the hang limit, killers first |
| connections | 270 s | 130 s | killers first |
| grants | 489 s | 325 s | killers first |

All six: 1006 s one after another (4253 s before), about half that two at a
time (`MUTATE_JOBS=2`). The claims tests' issuer: 5.9 s →
1.0 s for their 38 tests, which every survivor of the oidc group runs. names:
tests/service/test_hostile_names.py took 41 of its stats run's 46 s and killed nothing the core
tests did not; left out, every verdict is the same. masking: its 10 hanging scrub mutants took
93 worker-seconds instead of 541. The machine's load differed between the runs (a load average
of 10 to 16 for the first runs of these changes, 2 to 9 for these), so each figure mixes the
change with the load; the group table below has each run's own commit and time. After main
was merged (more OIDC code: 425 mutants in scope), the six ran again, two or three at once:
webhooks 134 s, oidc 591 s, names 8 s, masking 194 s, connections 72 s, grants 343 s.
"""


def report() -> int:
    groups = load_groups()
    explanations = load_explanations()
    results = {group.name: load_results(group) for group in groups}
    missing = [name for name, ran in results.items() if ran is None]
    stale = {}
    for group in groups:
        ran = results[group.name]
        if ran is not None and (changed := changed_since(group, ran)):
            stale[group.name] = changed
    everyone = [m for ran in results.values() if ran is not None for m in ran.mutants]
    verdicts = judge(everyone, explanations)
    used = {m.name for m, _ in verdicts.explained + verdicts.pending}
    # Only a group with results can tell an explanation is not needed any more.
    ran_modules = {module_of(p) for g in groups if results[g.name] is not None for p in g.mutate}
    unneeded = [
        e
        for name, e in sorted(explanations.items())
        if name not in used and name.rpartition(".")[0] in ran_modules
    ]
    REPORT.write_text(render(groups, results, verdicts=verdicts, stale=stale, unneeded=unneeded))
    print(f"wrote {REPORT.relative_to(ROOT)}")
    for mutant, _ in verdicts.pending:
        print(f"pending: {mutant.path}:{mutant.line} {mutant.name}")
    for mutant in verdicts.unexplained:
        change = f"{mutant.was!r} → {mutant.now!r}"
        print(f"unexplained: {mutant.path}:{mutant.line} {mutant.name}: {change}")
    for e in unneeded:
        print(f"not needed: explanation of {e.mutant}")
    for name, paths in stale.items():
        print(f"stale: group {name}, {', '.join(paths)} changed (make mutate MUTATE_GROUPS={name})")
    for name in missing:
        print(f"not run: group {name} (make mutate MUTATE_GROUPS={name})")
    return 1 if verdicts.unexplained or missing else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"]:
        run(argv[1:])
        return 0
    if argv[:1] == ["save"] and len(argv) > 1:
        save(argv[1:])
        return 0
    if argv[:1] == ["recheck"] and len(argv) > 1:
        recheck(argv[1:])
        return 0
    if argv == ["report"]:
        return report()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
