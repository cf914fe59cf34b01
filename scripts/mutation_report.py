"""Mutation testing of runkeys' trust-critical modules (`make mutate`), and its report.

    python scripts/mutation_report.py run [GROUP ...]   mutmut, one group at a time
    python scripts/mutation_report.py recheck GROUP ... its survivors again, after new tests
    python scripts/mutation_report.py report            docs/mutation.md; fails on a survivor
                                                        that nobody has explained

Each `[tool.runkeys.mutation]` group runs in its own directory under build/mutation/, against
its own tests. A survivor is explained in scripts/mutation_survivors.toml by its name and the
text of the line it changes, or by the `wording` rule (it only rewords an error)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "mutation"
REPORT = ROOT / "docs" / "mutation.md"
EXPLANATIONS = ROOT / "scripts" / "mutation_survivors.toml"
PENDING = "pending:"
# What each exit code mutmut records means here; `None`: the mutant was not run.
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
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--", *group.mutate, *group.tests)
    ran = {"seconds": round(seconds), "commit": commit + ("+changes" if dirty else "")}
    (group.directory / "elapsed.json").write_text(json.dumps(ran))
    return seconds


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def _mutmut(group: Group, log: IO[str], children: int, names: list[str]) -> None:
    env = {**os.environ, "RUNKEYS_TEST_LEDGERS": "sqlite"}
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
        dirty = _git("status", "--porcelain", "--", *group.mutate, *group.tests)
        commit = _git("rev-parse", "--short", "HEAD") + ("+changes" if dirty else "")
        commits = f"{ran.get('commit', '?')}, {commit}"
        ran = {"seconds": ran["seconds"] + round(seconds), "commit": commits}
        (group.directory / "elapsed.json").write_text(json.dumps(ran))
        print(f"  done in {seconds:.0f} s", flush=True)


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
    for group in chosen:
        print(f"mutate {group.name}: {', '.join(group.mutate)}", flush=True)
        seconds = run_group(group, pyproject, children)
        print(f"  done in {seconds:.0f} s", flush=True)


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


def judge(
    mutants: list[Mutant], explanations: Mapping[str, Explanation], trees: Mapping[str, ast.Module]
) -> Verdicts:
    verdicts = Verdicts()
    for mutant in mutants:
        if mutant.status not in ("survived", "no tests", "suspicious", "not run"):
            continue
        known = explanations.get(mutant.name)
        if known is not None and (known.was, known.now) == (mutant.was, mutant.now):
            target = verdicts.pending if known.why.startswith(PENDING) else verdicts.explained
            target.append((mutant, known.why))
        elif rewords(mutant, trees[mutant.path], survived=mutant.status != "not run"):
            verdicts.reworded.append(mutant)
        else:
            verdicts.unexplained.append(mutant)
    return verdicts


COLUMNS = ("killed", "timeout", "survived", "no tests", "rewording, not run", "not run")


def render(
    groups: list[Group],
    mutants: Mapping[str, list[Mutant]],
    *,
    elapsed: Mapping[str, int],
    commits: Mapping[str, str],
    verdicts: Verdicts,
    stale: list[Explanation],
) -> str:
    out = [HEADER.strip(), "", "## Results", ""]
    out.append(
        "Time: each group's whole run (making the mutants, the tests once to learn which reach "
        "what, then the mutants) on the 2-core machine the tests run on; commit: the code run."
    )
    out.append("")
    out.append("| group | module | mutants | " + " | ".join(COLUMNS) + " | time | commit |")
    out.append("|---|---|---:|" + "---:|" * len(COLUMNS) + "---:|---|")
    total: Counter[str] = Counter()
    reworded = {m.name for m in verdicts.reworded}
    for group in groups:
        for index, path in enumerate(group.mutate):
            counts = Counter(_column(m, reworded) for m in mutants[group.name] if m.path == path)
            total.update(counts)
            took = f"{elapsed[group.name]} s" if index == 0 else ""
            commit = f"`{commits[group.name]}`" if index == 0 else ""
            if commits[group.name] == "not run":
                commit = "**not run**" if index == 0 else ""
            cells = " | ".join(str(counts[c]) for c in COLUMNS)
            name = group.name if index == 0 else ""
            out.append(f"| {name} | `{path}` | {counts.total()} | {cells} | {took} | {commit} |")
    cells = " | ".join(f"**{total[c]}**" for c in COLUMNS)
    seconds = sum(elapsed.values())
    out.append(f"| **all** | | **{total.total()}** | {cells} | **{seconds} s** | |")
    out += [
        "",
        f"Surviving: {len(verdicts.explained)} equivalent or harmless (explained below), "
        f"{len(verdicts.reworded)} that only reword an error, **{len(verdicts.pending)} "
        f"pending** (real gaps not killed yet), **{len(verdicts.unexplained)} unexplained**.",
    ]
    if verdicts.unexplained:
        out += ["", "## Unexplained survivors", ""]
        out.append(
            "Each is a gap in the tests until a test kills it or scripts/mutation_survivors.toml "
            "says why it cannot matter."
        )
        out += [_entry(m, "**UNEXPLAINED**") for m in verdicts.unexplained]
    if verdicts.pending:
        out += ["", "## Pending: gaps not killed yet", ""]
        out.append(
            "Real gaps, each with what is still to be done about it (its test on the way in "
            "another change, or not looked at yet): listed first so they are not forgotten."
        )
        out += [_entry(m, why) for m, why in verdicts.pending]
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
    if stale:
        out += ["", "## Explanations no mutant needs any more", ""]
        out += [f"- `{e.mutant}`: `{e.was}` → `{e.now}`" for e in stale]
    return "\n".join(out) + "\n"


def _column(mutant: Mutant, reworded: set[str]) -> str:
    if mutant.status == "not run" and mutant.name in reworded:
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
only the tests named for it, with the ledger on SQLite only. `scripts/mutation_report.py`
writes this page from mutmut's results; it is not edited by hand.

How to read it: **killed** and **timeout** (a test hung or ran far past its time) are mutants
the tests catch. **survived** ones are each listed below with why they cannot matter (from
scripts/mutation_survivors.toml, matched by mutant name and the line it changes), as
rewording an error, or as **pending**: a real gap, with what is to be done about it;
**no tests**: no test in the group reaches the function; **rewording, not run**: a mutant
that only changes an error's literal text is not run at all; **not run**: mutmut did not get
to it. mutmut changes code inside functions only: module-level tables and patterns (the
regular expressions, the lists of reserved names) are checked by the tests of their own.
`make mutate` fails while any survivor is unexplained.
`mutmut show NAME`, run in `build/mutation/GROUP/`, shows a mutant after a run.
"""


def report() -> int:
    groups = load_groups()
    explanations = load_explanations()
    mutants: dict[str, list[Mutant]] = {}
    elapsed: dict[str, int] = {}
    commits: dict[str, str] = {}
    missing = [g.name for g in groups if not (g.directory / "elapsed.json").exists()]
    for group in groups:
        if group.name in missing:
            mutants[group.name], elapsed[group.name], commits[group.name] = [], 0, "not run"
            continue
        mutants[group.name] = read_group(group)
        ran = json.loads((group.directory / "elapsed.json").read_text())
        elapsed[group.name] = ran["seconds"]
        commits[group.name] = ran.get("commit", "?")
    paths = {path for group in groups for path in group.mutate}
    trees = {path: ast.parse((ROOT / path).read_text()) for path in paths}
    everyone = [m for group in groups for m in mutants[group.name]]
    verdicts = judge(everyone, explanations, trees)
    used = {m.name for m, _ in verdicts.explained + verdicts.pending}
    stale = [e for name, e in sorted(explanations.items()) if name not in used]
    REPORT.write_text(
        render(groups, mutants, elapsed=elapsed, commits=commits, verdicts=verdicts, stale=stale)
    )
    print(f"wrote {REPORT.relative_to(ROOT)}")
    for mutant in verdicts.unexplained:
        change = f"{mutant.was!r} → {mutant.now!r}"
        print(f"unexplained: {mutant.path}:{mutant.line} {mutant.name}: {change}")
    for name in missing:
        print(f"not run: group {name} (python scripts/mutation_report.py run {name})")
    return 1 if verdicts.unexplained or missing else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"]:
        run(argv[1:])
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
