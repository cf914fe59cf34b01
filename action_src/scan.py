"""`runkeys-scan`: the `scan` sub-action. Fails, naming the file, the line, the key's variable and
the encoding (never the value), when a value or a secret part of this job's keys is in a file
under `path`: run it before `actions/upload-artifact`.

The main step left a manifest (`runkeys.filescan`: variable names and fingerprints); the values
come from this step's own environment, which the runner gives a container action in full."""

from __future__ import annotations

import glob
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

from action_src.inputs import get_bool, get_input
from action_src.workflow import Workflow, unexpected
from runkeys.errors import ConfigError, RunkeysError
from runkeys.filescan import (
    MANIFESTS_VARIABLE,
    Hit,
    Manifest,
    Matcher,
    is_binary,
    needles,
    parse_size,
)
from runkeys.leases import fingerprint

TITLE = "runkeys scan"
DEFAULT_MAX_FILE_SIZE = "1G"
CHUNK = 1 << 20
SHOWN_PER_FILE = 20  # annotations per file; the rest are counted
SHOWN_IN_SUMMARY = 200  # rows of the summary's table (GitHub caps a summary at 1 MiB)
_GLOB = frozenset("*?[")


class ScanError(RunkeysError):
    title = "Nothing to scan for"


@dataclass
class Settings:
    patterns: list[str]
    fail: bool
    max_file_size: int


@dataclass
class Found:
    path: str
    binary: bool
    hits: list[Hit]


@dataclass
class Report:
    files: int = 0
    size: int = 0
    found: list[Found] = field(default_factory=list)
    unscanned: list[tuple[str, str]] = field(default_factory=list)  # path, why
    skipped: list[tuple[str, str]] = field(default_factory=list)  # path, why (nothing to upload)


def settings(environ: Mapping[str, str]) -> Settings:
    patterns = [line.strip() for line in get_input(environ, "path").splitlines() if line.strip()]
    if not [p for p in patterns if not p.startswith("!")]:
        raise ConfigError(
            "input `path`",
            "names no folder or file",
            fix="name the folders and files to scan, one per line, as for actions/upload-artifact",
        )
    fail = get_bool(environ, "fail") if get_input(environ, "fail") else True
    try:
        size = parse_size(get_input(environ, "max-file-size") or DEFAULT_MAX_FILE_SIZE)
    except ValueError as exc:
        raise ConfigError("input `max-file-size`", str(exc), fix="e.g. 500M or 2G") from None
    return Settings(patterns, fail, size)


def job_values(environ: Mapping[str, str], workflow: Workflow) -> dict[str, str]:
    """Job variable → value of every watched variable whose value is still the one minted."""
    paths = [p for p in environ.get(MANIFESTS_VARIABLE, "").splitlines() if p]
    if not paths:
        raise ScanError(
            f"this job has no runkeys keys to look for ({MANIFESTS_VARIABLE} is not set)",
            fix="run the scan in the job that minted the keys, after the runkeys step",
        )
    values: dict[str, str] = {}
    for path in paths:
        try:
            with open(path, "rb") as file:
                manifest = Manifest.from_text(file.read())
        except (OSError, ValueError) as exc:
            workflow.warning(f"The key list {path} of a runkeys step cannot be read: {exc}")
            continue
        for watched in manifest.watched:
            value = environ.get(watched.variable)
            if value is None:
                workflow.warning(f"{watched.variable} is not in this step's environment: skipped")
            elif fingerprint(value) != watched.fingerprint:
                workflow.warning(
                    f"{watched.variable} is no longer the value runkeys minted (a later step "
                    "set it): skipped"
                )
            else:
                values[watched.variable] = value
    if not values:
        raise ScanError(
            "none of this job's runkeys keys is in this step's environment",
            fix="run the scan in the job that minted the keys, after the runkeys step, and "
            "leave the variables it exported as they are",
        )
    return values


def _is_glob(pattern: str) -> bool:
    return not _GLOB.isdisjoint(pattern)


def _expand(pattern: str) -> list[str]:
    if _is_glob(pattern):
        return sorted(glob.glob(pattern, recursive=True, include_hidden=True))
    return [pattern] if os.path.lexists(pattern) else []


def _under(path: str, roots: set[str]) -> bool:
    path = os.path.normpath(path)
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def files_of(patterns: list[str], report: Report, workflow: Workflow) -> Iterator[str]:
    """Every file the patterns name, as actions/upload-artifact finds them: directories
    recursively, symbolic links followed (it uploads what they point to, even outside the
    path), `!pattern` lines excluded. Each real file once."""
    excluded = {os.path.normpath(p) for e in patterns if e.startswith("!") for p in _expand(e[1:])}
    seen: set[str] = set()
    for pattern in (p for p in patterns if not p.startswith("!")):
        paths = _expand(pattern)
        if not paths:
            workflow.warning(f"No file matches the path {pattern}: nothing of it was scanned.")
        for path in paths:
            if os.path.isdir(path):
                for top, dirs, names in os.walk(path, followlinks=True):
                    real = os.path.realpath(top)
                    if real in seen:  # a link back up the tree, or a folder seen already
                        dirs.clear()
                        continue
                    seen.add(real)
                    dirs.sort()
                    for name in sorted(names):
                        yield from _file(os.path.join(top, name), excluded, seen, report)
            else:
                yield from _file(path, excluded, seen, report)


def _file(path: str, excluded: set[str], seen: set[str], report: Report) -> Iterator[str]:
    if _under(path, excluded):
        return
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        report.skipped.append((path, "a symbolic link to nothing"))
        return
    except OSError as exc:
        report.unscanned.append((path, exc.strerror or type(exc).__name__))
        return
    if not stat.S_ISREG(mode):
        report.skipped.append((path, "not a regular file"))
        return
    real = os.path.realpath(path)
    if real not in seen:
        seen.add(real)
        yield path


def _chunks(file: BinaryIO, first: bytes) -> Iterator[bytes]:
    yield first
    while chunk := file.read(CHUNK):
        yield chunk


def scan_file(path: str, matcher: Matcher, config: Settings, report: Report) -> None:
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > config.max_file_size:
                report.unscanned.append(
                    (path, f"{size} bytes, over `max-file-size` ({config.max_file_size})")
                )
                return
            first = file.read(CHUNK)
            hits = list(matcher.scan(_chunks(file, first)))
    except OSError as exc:
        report.unscanned.append((path, f"cannot be read ({exc.strerror or type(exc).__name__})"))
        return
    report.files += 1
    report.size += size
    if hits:
        report.found.append(Found(path, is_binary(first), hits))


def _where(found: Found, hit: Hit) -> str:
    return f"byte {hit.offset}" if found.binary else f"line {hit.line}"


def announce(report: Report, config: Settings, workflow: Workflow) -> None:
    kind = "error" if config.fail else "warning"
    for found in report.found:
        for hit in found.hits[:SHOWN_PER_FILE]:
            workflow.annotation(
                kind,
                TITLE,
                f"{found.path}, {_where(found, hit)}: the value of {hit.needle.variable} "
                f"({hit.needle.encoding})",
                file=found.path,
                line=None if found.binary else hit.line,
            )
        if len(found.hits) > SHOWN_PER_FILE:
            more = len(found.hits) - SHOWN_PER_FILE
            workflow.annotation(kind, TITLE, f"{found.path}: {more} more finding(s)")
    for path, why in report.unscanned:
        workflow.annotation(kind, TITLE, f"{path} was not scanned: {why}", file=path)
    for path, why in report.skipped:
        workflow.progress(f"Skipped {path}: {why} (nothing to upload)")


def summary(report: Report, keys: int) -> str:
    findings = sum(len(f.hits) for f in report.found)
    lines = [
        f"## runkeys scan: {findings} finding(s) in {len(report.found)} file(s)",
        "",
        f"Scanned {report.files} file(s), {report.size} bytes, for {keys} value(s).",
        "",
    ]
    if report.found:
        lines += ["| File | Where | Variable | Encoding |", "|---|---|---|---|"]
        rows = [(found, hit) for found in report.found for hit in found.hits]
        for found, hit in rows[:SHOWN_IN_SUMMARY]:
            cells = [found.path, _where(found, hit), hit.needle.variable, hit.needle.encoding]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
        if len(rows) > SHOWN_IN_SUMMARY:
            lines += [f"And {len(rows) - SHOWN_IN_SUMMARY} more.", ""]
    if report.unscanned:
        lines += ["Not scanned:", ""]
        lines += [f"- {_cell(path)}: {_cell(why)}" for path, why in report.unscanned]
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def run(environ: Mapping[str, str], workflow: Workflow) -> int:
    config = settings(environ)
    values = job_values(environ, workflow)
    workflow.redact(values.values())  # a file's name could hold a value, too
    matcher = Matcher(needles(values))
    report = Report()
    for path in files_of(config.patterns, report, workflow):
        scan_file(path, matcher, config, report)
    announce(report, config, workflow)
    findings = sum(len(f.hits) for f in report.found)
    workflow.set_output("findings", str(findings))
    workflow.set_output("files", str(report.files))
    workflow.summary(summary(report, len(values)))
    workflow.progress(
        f"Scanned {report.files} file(s), {report.size} bytes, for {len(values)} value(s) of "
        f"this job's keys: {findings} finding(s), {len(report.unscanned)} file(s) not scanned."
    )
    failed = findings or report.unscanned
    return 1 if failed and config.fail else 0


def main(environ: Mapping[str, str] | None = None, stdout: TextIO | None = None) -> int:
    environ = os.environ if environ is None else environ
    workflow = Workflow(environ, stdout or sys.stdout, title=TITLE)
    try:
        return run(environ, workflow)
    except RunkeysError as exc:
        return workflow.die(exc)
    except Exception as exc:  # a bug: the message names no value (workflow redacts them)
        return workflow.die(unexpected(exc))


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
